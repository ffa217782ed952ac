// `qnas mixed-precision`: bits per layer for a trained network (uniform, HAWQ-v2, AutoQ or latency-aware
// INT8/FP32), a short QAT fine-tune in those bits, and what they cost: BitOPs, compression ratio, model size,
// INT8 latency (pipeline/mixed_precision_job.h).
#include <fmt/format.h>
#include <torch/torch.h>

#include <cstdio>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "core/error.h"
#include "pipeline/mixed_precision_job.h"

namespace qnas::cli {

void add_mixed_precision_command(CLI::App& app) {
  auto o = std::make_shared<pipeline::MixedPrecisionOptions>();
  auto run_dir = std::make_shared<std::string>(), out_dir = std::make_shared<std::string>();
  auto json_output = std::make_shared<bool>(false);
  auto torch_threads = std::make_shared<int>(0);
  auto* cmd = app.add_subcommand("mixed-precision",
                                 "Bits per layer for a trained network (uniform, HAWQ-v2, AutoQ or "
                                 "latency-aware INT8/FP32), fine-tuned, with BitOPs, size and latency");
  cmd->add_option("--run-dir", *run_dir, "a finished `qnas train` run (a plain network or a supernet)")
      ->required();
  cmd->add_option("--subnet", o->subnet, "for a supernet run: the subnet (default: the max subnet)");
  cmd->add_option(
         "--method", o->method,
         "hawq | autoq | uniform | latency-aware (INT8 or FP32 per block) | random (HAWQ's baseline) | "
         "given (--assignment)")
      ->capture_default_str();
  cmd->add_option("--bits", o->bits,
                  "hawq, autoq: the bit-widths to choose from (default 4 8; autoq 2 4 8); uniform: one "
                  "bit-width");
  cmd->add_option("--size-ratio", o->size_ratio,
                  "autoq: model size / FP32 model size to reach; hawq, random: this target instead of "
                  "--compression-ratio (size counts weights only: pair it with --activation-bits 8)")
      ->capture_default_str();
  cmd->add_option("--autoq-episodes", o->autoq_episodes, "autoq: episodes, warm-up included")
      ->capture_default_str();
  cmd->add_option("--autoq-warmup", o->autoq_warmup, "autoq: episodes of random actions first")
      ->capture_default_str();
  cmd->add_option("--reward-images", o->reward_images,
                  "autoq: held-out training images the reward's accuracy is measured on")
      ->capture_default_str();
  cmd->add_option("--bn-batches", o->bn_batches, "autoq: BN adaptation batches (64 images) per episode")
      ->capture_default_str();
  cmd->add_option("--compression-ratio", o->compression_ratio,
                  "hawq, random: INT8 bit complexity / the assignment's (sum FLOPs x max(b_w, b_a)) to reach")
      ->capture_default_str();
  cmd->add_option("--latency-slack", o->latency_slack,
                  "latency-aware: allowed latency above the fastest assignment (FP32 exactly where INT8 "
                  "gains no time), as a fraction")
      ->capture_default_str();
  cmd->add_option("--activation-bits", o->activation_bits, "every layer's input bits (0: its weight's bits)")
      ->capture_default_str();
  cmd->add_option("--hessian-iterations", o->hessian_iterations, "Hutchinson iterations at most (NNCF: 200)")
      ->capture_default_str();
  cmd->add_option("--hessian-batch", o->hessian_batch, "images per Hutchinson iteration")
      ->capture_default_str();
  cmd->add_option("--finetune-epochs", o->finetune_epochs, "QAT epochs in the assigned bits (0: none)")
      ->capture_default_str();
  cmd->add_option("--finetune-images", o->finetune_images, "training images per fine-tune epoch")
      ->capture_default_str();
  cmd->add_option(
      "--assignment", o->assignment,
      "given: the assignment.json to fine-tune and measure (another method's, or written by hand)");
  cmd->add_option("--finetune-lr", o->finetune_lr, "fine-tune learning rate")->capture_default_str();
  cmd->add_option("--finetune-distill", o->finetune_distill,
                  "learn from the network in its trained bits (the run's distillation loss), not the labels")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed,
                  "seed of the Hutchinson vectors, AutoQ, the random order and the fine-tune's data order")
      ->capture_default_str();
  cmd->add_option("--test-images", o->test_images, "test images for accuracy (0: all)")
      ->capture_default_str();
  cmd->add_option("--data-dir", o->data_dir, "Fashion-MNIST directory")->capture_default_str();
  cmd->add_option("--threads", o->threads, "threads of the latency measurement")->capture_default_str();
  cmd->add_option("--runs", o->runs, "timed runs per latency measurement")->capture_default_str();
  cmd->add_option("--torch-threads", *torch_threads, "LibTorch threads (0: all cores)");
  cmd->add_option("--out", *out_dir, "output directory (default: RUN/mixed-precision-METHOD)");
  cmd->add_flag("--json", *json_output, "print result.json");
  cmd->callback([=] {
    if (o->method == "hawq" || o->method == "random") {
      o->size_target = cmd->count("--size-ratio") > 0;
      if (o->size_target && cmd->count("--compression-ratio") > 0)
        fail("--method {} reaches one target: give --compression-ratio or --size-ratio, not both", o->method);
    }
    o->run_dir = *run_dir;
    o->out_dir = *out_dir;
    torch::set_num_threads(*torch_threads > 0
                               ? *torch_threads
                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    const auto r = pipeline::run_mixed_precision_job(*o);
    if (*json_output) {
      std::printf("%s\n", r.dump(2).c_str());
      return;
    }
    std::printf(
        "| method | bits | test top-1 (before fine-tune) | BitOPs (M) | ratio | size (KiB) | size / FP32 | "
        "INT8 ms | as assigned ms (FP32 blocks) | FP32 ms |\n");
    std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    std::printf(
        "| %s | %s | %.2f%% (%.2f%%) | %.2f of %.2f | %.3f | %.1f of %.1f (FP32 %.1f) | %.3f | %.3f | %.3f "
        "(%d) "
        "| %.3f |\n",
        o->method.c_str(), fmt::format("{}", fmt::join(r["bits"].get<std::vector<int>>(), ",")).c_str(),
        100 * r["accuracy"].get<double>(), 100 * r["accuracy_before_finetune"].get<double>(),
        r["bitops_m"].get<double>(), r["bitops_int8_m"].get<double>(), r["compression_ratio"].get<double>(),
        r["model_size_kb"].get<double>(), r["model_size_int8_kb"].get<double>(),
        r["model_size_fp32_kb"].get<double>(), r["size_ratio"].get<double>(),
        r["latency_int8_ms"]["median"].get<double>(), r["latency_as_assigned_ms"]["median"].get<double>(),
        r["fp32_blocks"].get<int>(), r["latency_fp32_ms"]["median"].get<double>());
    std::printf("%s\nwritten: %s/{assignment.json,result.json}\n",
                r["latency_note"].get<std::string>().c_str(),
                (o->out_dir.empty() ? o->run_dir / ("mixed-precision-" + o->method) : o->out_dir).c_str());
  });
}

}  // namespace qnas::cli
