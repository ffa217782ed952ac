#pragma once
// `qnas mixed-precision`: bits for every layer of a trained network, then a short QAT fine-tune in those
// bits, distilled from the same network in its trained bits. A QFA supernet's subnet starts from the ranges
// its bank learned for those bits; another run's weight put below its trained bits from the scale closest to
// what it computed with, an input below 4 bits from LSQ's initialisation (nn::Scales::kFitLowerBits).
//   uniform: every layer at one bit-width (the reference points: uniform 8, uniform 4);
//   autoq:   NNCF's AutoQ (a DDPG agent picks each weight's and each input's bits; the model-size target
//            enforced from the last layer back; reward = accuracy on held-out training images after BN
//            adaptation; search/autoq.h). Its episodes are logged to OUT/autoq-episodes.json, from which an
//            interrupted search resumes by replay;
//   hawq:    NNCF's HAWQ-v2 (Hutchinson traces of the FP32 network's Hessian, monotone candidates, the lowest
//            trace-weighted perturbation that reaches the compression ratio; search/hawq.h).
//   random:  the baseline for HAWQ's ranking: layers in a seeded random order lowered from the highest to the
//            lowest of --bits until --compression-ratio is reached;
//   given:   the bits of --assignment FILE, fine-tuned and measured like the others;
//   latency-aware: INT8 or FP32 per block, from this CPU's measured per-block INT8 and FP32 latency and the
//   same
//            Hessian sensitivity: FP32 where INT8 gains no time (it costs accuracy for nothing), then the
//            most sensitive blocks per millisecond of lost INT8 gain while the predicted latency stays within
//            --latency-slack of that fastest assignment; the result measured as a mixed network
//            (latency/profiling.h time_mixed).
// The stem conv and the classifier stay at 8 bits. Results: accuracy before and after the fine-tune
// (fake-quant on the test set), BitOPs, compression ratio, model size, and the oneDNN INT8 latency of the
// network (oneDNN 2.6 has no sub-8-bit kernels: 2/3/4-bit layers run as INT8, so the bits change size and
// BitOPs here, not latency). Writes OUT/assignment.json (what `--bits-from` reads), OUT/result.json,
// OUT/traces.json; the fine-tune resumes from OUT/finetune-<assignment hash>/checkpoint.pt and the traces
// from OUT/traces.json.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qnas::pipeline {

struct MixedPrecisionOptions {
  std::filesystem::path run_dir;  // a finished `qnas train` run
  std::string subnet;             // a supernet run's subnet (empty: the max subnet)
  std::filesystem::path out_dir;  // default: RUN/mixed-precision-<method>
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string method = "hawq";  // hawq | autoq | uniform | latency-aware | random | given
  // given: the assignment to fine-tune (an assignment.json of this network, e.g. another method's or one
  // written by hand), for comparing assignments under the same fine-tune.
  std::filesystem::path assignment;
  // hawq, autoq: the choices (default {4, 8} and {2, 4, 8}); uniform: one value (required).
  std::vector<int> bits;
  double compression_ratio = 1.5;  // hawq's and random's target
  double size_ratio = 0.15;        // autoq's target: model size / FP32 model size
  // hawq, random: reach size_ratio instead of compression_ratio (set when --size-ratio is given to them).
  // With activation_bits = 8 this compares HAWQ's ranking with AutoQ's search under AutoQ's own constraint.
  bool size_target = false;
  int autoq_episodes = 120;  // warm-up included
  int autoq_warmup = 20;
  std::int64_t reward_images = 500;  // autoq: held-out training images per episode
  int bn_batches = 4;                // autoq: BN adaptation batches (of 64 images) per episode
  double latency_slack = 0.0;        // latency-aware: allowed latency above the fastest assignment
  int activation_bits = 0;           // 0: a layer's input gets its weight's bits
  int hessian_iterations = 200;
  std::int64_t hessian_batch = 32;
  int finetune_epochs = 1;  // QAT epochs in the assigned bits (0: none)
  std::int64_t finetune_images = 10000;
  double finetune_lr = 0.004;
  // The fine-tune learns from the network in its trained bits (the run's distillation loss) rather than from
  // the labels alone.
  bool finetune_distill = true;
  std::int64_t test_images = 0;  // 0: the whole test set
  int threads = 1;               // latency measurement
  int runs = 50;
  std::uint64_t seed = 0;
};

// Runs the job; returns what it wrote to result.json. One qnas::Error for a missing or untrained run, bits
// outside {2,3,4,8,32}, an unknown method, or a ratio no assignment meets.
nlohmann::json run_mixed_precision_job(const MixedPrecisionOptions& options);

}  // namespace qnas::pipeline
