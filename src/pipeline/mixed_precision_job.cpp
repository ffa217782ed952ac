#include "pipeline/mixed_precision_job.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/fashion_mnist.h"
#include "data/loader.h"
#include "deploy/deploy.h"
#include "deploy/engines.h"
#include "latency/profiling.h"
#include "nn/mixed_precision.h"
#include "nn/network.h"
#include "quant/hessian.h"
#include "runtime/program.h"
#include "search/autoq.h"
#include "search/hawq.h"
#include "search/latency_aware.h"
#include "space/bit_assignment.h"
#include "train/trainer.h"

namespace qnas::pipeline {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::vector<std::int64_t> first_indices(std::int64_t from, std::int64_t to) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

// The options with each method's default bit-widths filled in, checked.
MixedPrecisionOptions checked_options(MixedPrecisionOptions o) {
  if (o.method != "hawq" && o.method != "uniform" && o.method != "latency-aware" && o.method != "autoq" &&
      o.method != "given" && o.method != "random")
    fail("unknown mixed-precision method '{}': use hawq, autoq, uniform, latency-aware, random or given",
         o.method);
  if (!(o.latency_slack >= 0)) fail("--latency-slack must be >= 0, got {}", o.latency_slack);
  if ((o.method == "given") != !o.assignment.empty())
    fail(
        "--method given fine-tunes the bits of --assignment FILE (an assignment.json), and --assignment goes "
        "with --method given only");
  if (o.method == "given") {
    if (!o.bits.empty()) fail("--method given takes its bits from --assignment: leave --bits out");
    return o;
  }
  if (o.bits.empty()) {
    if (o.method == "uniform") fail("--method uniform needs its bit-width: --bits 4 (or 2, 3, 8)");
    o.bits = o.method == "autoq"           ? std::vector<int>{2, 4, 8}
             : o.method == "latency-aware" ? std::vector<int>{8, 32}
                                           : std::vector<int>{4, 8};
  }
  for (int b : o.bits) space::check_bits(b, "--bits");
  if (o.size_target && o.method != "hawq" && o.method != "random")
    fail("--size-ratio is a target of --method autoq, hawq or random, not {}", o.method);
  if (o.size_target && !(o.size_ratio > 0 && o.size_ratio <= 1))
    fail("--size-ratio is model size / FP32 model size, in (0, 1]: got {}", o.size_ratio);
  if (o.method == "autoq") {
    for (int b : o.bits)
      if (b > 8) fail("--method autoq chooses quantiser bit-widths: --bits from 2, 3, 4 and 8, got {}", b);
    if (!(o.size_ratio > 0 && o.size_ratio <= 1))
      fail("--size-ratio is model size / FP32 model size, in (0, 1]: got {}", o.size_ratio);
    if (o.autoq_episodes < 1 || o.autoq_warmup < 0 || o.reward_images < 1 || o.bn_batches < 0)
      fail(
          "--autoq-episodes and --reward-images must be positive, --autoq-warmup and --bn-batches not "
          "negative");
  }
  if (o.method == "latency-aware" && o.bits != std::vector<int>{8, 32})
    fail("--method latency-aware chooses INT8 or FP32 per block: leave --bits out or give --bits 8 32");
  if (o.method == "uniform" && o.bits.size() != 1)
    fail("--method uniform takes one bit-width (--bits 4), got {}", o.bits.size());
  if (o.activation_bits != 0) space::check_bits(o.activation_bits, "--activation-bits");
  if (o.hessian_iterations < 1 || o.hessian_batch < 1)
    fail("--hessian-iterations and --hessian-batch must be positive");
  if (o.finetune_epochs < 0) fail("--finetune-epochs must not be negative");
  return o;
}

// Identifies the trained network a cached result (traces, AutoQ episodes) was computed on, so that a run
// retrained with the same subnet and settings does not reuse another network's.
std::string network_fingerprint(torch::nn::Module& net) {
  torch::NoGradGuard no_grad;
  double sum = 0, magnitude = 0;
  for (const auto& p : net.parameters()) {
    sum += p.sum().item<double>();
    magnitude += p.abs().sum().item<double>();
  }
  return fmt::format("{:.9g}/{:.9g}", sum, magnitude);
}

// Hutchinson traces of the FP32 network's loss Hessian, one per quantised layer's weight, on training batches
// (BN in eval mode: the batch statistics would couple the images). Cached in `path`, keyed by the settings.
std::vector<quant::TraceEstimate> layer_traces(nn::StaticNetImpl& net, const data::ImageDataset& train,
                                               std::int64_t train_images, const MixedPrecisionOptions& o,
                                               const fs::path& path) {
  const json key = {{"subnet", net.spec().subnet},
                    {"network", network_fingerprint(net)},
                    {"iterations", o.hessian_iterations},
                    {"batch", o.hessian_batch},
                    {"seed", o.seed}};
  if (fs::exists(path)) {
    const json cached = read_json_file(path);
    if (cached.value("key", json()) == key) {
      std::vector<quant::TraceEstimate> out;
      for (const auto& t : cached.at("traces"))
        out.push_back({t.at("trace").get<double>(), t.at("trace_per_weight").get<double>()});
      std::fprintf(stderr, "mixed precision: Hessian traces from %s\n", path.c_str());
      return out;
    }
  }
  const auto handles = nn::quant_layer_handles(net);
  std::vector<torch::Tensor> weights;
  for (const auto& h : handles) weights.push_back(h.weight);
  quant::set_bits(net, 32);
  net.eval();
  data::LoaderOptions lo;
  lo.batch_size = o.hessian_batch;
  lo.seed = o.seed;
  data::BatchLoader loader(train, first_indices(0, train_images), lo);
  std::int64_t epoch = 0;
  loader.reset(epoch);
  ProgressLine progress("Hessian traces (Hutchinson)", o.hessian_iterations, "iterations");
  int calls = 0;
  const auto loss = [&] {
    data::Batch b;
    if (!loader.next(b)) {
      loader.reset(++epoch);
      loader.next(b);
    }
    progress.update(++calls);
    return torch::nn::functional::cross_entropy(net.forward(b.images), b.labels);
  };
  quant::HutchinsonOptions ho;
  ho.max_iterations = o.hessian_iterations;
  ho.seed = o.seed;
  const auto r = quant::hutchinson_traces(loss, weights, ho);
  progress.finish();
  json traces = json::array();
  const auto ql = space::quant_layers(net.spec());
  for (size_t i = 0; i < r.traces.size(); ++i)
    traces.push_back({{"name", ql[i].name},
                      {"trace", r.traces[i].trace},
                      {"trace_per_weight", r.traces[i].trace_per_weight}});
  write_json_atomic(
      path, {{"key", key}, {"iterations", r.iterations}, {"converged", r.converged}, {"traces", traces}});
  return r.traces;
}

// INT8 or FP32 per block (see the header). Returns the assignment and what it was decided from.
space::BitAssignment latency_aware_bits(nn::StaticNetImpl& net,
                                        const std::vector<quant::TraceEstimate>& traces,
                                        const MixedPrecisionOptions& o, const runtime::MeasureOptions& m,
                                        json& method) {
  const space::ArchSpec& spec = net.spec();
  const auto ql = space::quant_layers(spec);
  const auto handles = nn::quant_layer_handles(net);
  const size_t blocks = spec.blocks.size();
  std::vector<double> sensitivity(blocks, 0.0), int8_ms(blocks), fp32_ms(blocks);
  // A Hutchinson estimate can come out negative (away from a minimum, or from few samples): read as "no
  // measurable sensitivity", not as a reward for quantising.
  for (size_t i = 0; i < ql.size(); ++i)
    sensitivity[static_cast<size_t>(ql[i].block)] +=
        std::max(0.0, traces[i].trace_per_weight) * quant::weight_perturbation(handles[i].weight, 8);
  ProgressLine progress("per-block INT8 and FP32 latency", static_cast<std::int64_t>(blocks), "blocks");
  for (size_t b = 0; b < blocks; ++b) {
    const runtime::Program p = runtime::lower_block(spec.blocks[b]);
    int8_ms[b] =
        latency::time_program(p, runtime::Precision::kInt8, o.threads, m, false, 1, true).timing.min_ms;
    fp32_ms[b] =
        latency::time_program(p, runtime::Precision::kFp32, o.threads, m, false, 1, false).timing.min_ms;
    progress.update(static_cast<std::int64_t>(b + 1));
  }
  progress.finish();
  std::vector<search::BlockCosts> costs;
  for (size_t b = 0; b < blocks; ++b) costs.push_back({int8_ms[b], fp32_ms[b], sensitivity[b]});
  const search::PrecisionChoice choice = search::choose_block_precision(costs, o.latency_slack);
  const std::vector<bool>& fp32 = choice.fp32;
  space::BitAssignment bits = space::BitAssignment::uniform(spec, 8, 8);
  for (size_t i = 0; i < ql.size(); ++i) {
    const auto b = static_cast<size_t>(ql[i].block);
    if (!fp32[b]) continue;
    // A layer reading the block's input sees what the previous block stores: INT8 codes unless it is FP32
    // too.
    const bool reads_block_input = ql[i].layer == 0 || ql[i].part == space::QuantLayer::Part::kProjection;
    const bool input_fp32 = reads_block_input ? (b == 0 || fp32[b - 1]) : true;
    bits.layers[i] = {space::kFloatBits, input_fp32 ? space::kFloatBits : 8};
  }
  json rows = json::array();
  for (size_t b = 0; b < blocks; ++b)
    rows.push_back({{"block", b},
                    {"stage", spec.blocks[b].stage},
                    {"type", spec.blocks[b].type ? spec.blocks[b].type->name : std::string()},
                    {"int8_ms", int8_ms[b]},
                    {"fp32_ms", fp32_ms[b]},
                    {"sensitivity", sensitivity[b]},
                    {"precision", fp32[b] ? "fp32" : "int8"}});
  method = {{"method", "latency-aware"},
            {"latency_slack", o.latency_slack},
            {"predicted_ms", choice.predicted_ms},
            {"block_sum_int8_ms", choice.all_int8_ms},
            {"block_sum_fastest_ms", choice.fastest_ms},
            {"blocks", rows}};
  return bits;
}

// AutoQ (see the header). BN adaptation rewrites the running statistics for each episode's bits; the
// network's own are put back afterwards, so the fine-tune starts from the trained network.
space::BitAssignment autoq_bits(nn::StaticNetImpl& net, const data::ImageDataset& train,
                                std::int64_t train_images, const data::Normalize& normalize,
                                const MixedPrecisionOptions& o, const fs::path& log_path, json& method) {
  const space::ArchSpec& spec = net.spec();
  search::AutoqOptions ao;
  ao.bits = o.bits;
  ao.size_ratio = o.size_ratio;
  ao.episodes = o.autoq_episodes;
  ao.warmup_episodes = std::min(o.autoq_warmup, o.autoq_episodes);
  ao.seed = o.seed;
  search::AutoqSearch search(spec, ao);

  // The reward: accuracy on training images the run did not train on when there are any (a run with a
  // train_limit leaves the rest), otherwise the last ones (said in the result).
  const std::int64_t n = std::min(o.reward_images, train.count);
  const bool held_out = train_images + n <= train.count;
  const std::int64_t from = held_out ? train_images : train.count - n;
  const auto reward_indices = first_indices(from, from + n);
  std::vector<std::int64_t> labels;
  for (auto i : reward_indices) labels.push_back(train.label(i));
  data::LoaderOptions bn_options;
  bn_options.batch_size = 64;
  bn_options.seed = o.seed;
  bn_options.normalize = normalize;
  data::BatchLoader bn_loader(train, first_indices(0, train_images), bn_options);
  // Every episode starts from the trained network (parameters, BN statistics, 8-bit quantizers), so an
  // episode's reward does not depend on the ones before it and a resumed search replays exactly.
  std::vector<torch::Tensor> saved_parameters, saved_buffers;
  for (const auto& p : net.parameters()) saved_parameters.push_back(p.detach().clone());
  for (const auto& b : net.buffers()) saved_buffers.push_back(b.clone());
  const space::BitAssignment int8 = space::BitAssignment::uniform(spec, 8, 8);
  const auto restore = [&] {
    torch::NoGradGuard no_grad;
    const auto parameters = net.parameters();
    for (size_t i = 0; i < parameters.size(); ++i) parameters[i].copy_(saved_parameters[i]);
    const auto buffers = net.buffers();
    for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(saved_buffers[i]);
    nn::apply_bits(net, int8, nn::Scales::kAsTrained);
  };
  const auto evaluate = [&](const space::BitAssignment& bits) {
    restore();
    nn::apply_bits(net, bits, nn::Scales::kFitLowerBits);
    if (o.bn_batches > 0) {
      bn_loader.reset(0);  // the same batches every episode: rewards differ by the bits alone
      nn::recalibrate_batch_norm(
          net,
          [&](torch::Tensor& images) {
            data::Batch b;
            if (!bn_loader.next(b)) return false;
            images = b.images;
            return true;
          },
          o.bn_batches);
    }
    deploy::EngineResult r = deploy::run_fakequant(net, train, reward_indices, normalize);
    deploy::score(r, labels, nullptr);
    return r.top1;
  };

  const json key = {{"subnet", spec.subnet},
                    {"network", network_fingerprint(net)},
                    {"bits", o.bits},
                    {"size_ratio", o.size_ratio},
                    {"episodes", o.autoq_episodes},
                    {"warmup", ao.warmup_episodes},
                    {"reward_images", n},
                    {"reward_from", from},
                    {"bn_batches", o.bn_batches},
                    {"scales", "fit-lower-bits"},
                    {"seed", o.seed}};
  json log = json::array();
  if (fs::exists(log_path)) {
    const json cached = read_json_file(log_path);
    if (cached.value("key", json()) == key) {
      std::vector<double> accuracies;
      std::vector<space::BitAssignment> assignments;
      for (const auto& e : cached.at("episodes")) {
        accuracies.push_back(e.at("accuracy").get<double>());
        assignments.push_back(space::BitAssignment::from_json(e.at("assignment"), spec, log_path.string()));
      }
      const int taken = search.replay(accuracies, assignments);
      for (int i = 0; i < taken; ++i) log.push_back(cached.at("episodes")[static_cast<size_t>(i)]);
      std::fprintf(stderr, "AutoQ: resumed after %d of %d episodes from %s\n", taken, o.autoq_episodes,
                   log_path.c_str());
    }
  }
  const int resumed = search.episode();
  ProgressLine progress("AutoQ episodes", o.autoq_episodes - resumed, "episodes");
  while (!search.done()) {
    const space::BitAssignment bits = search.propose();
    const double accuracy = evaluate(bits);
    search.record(accuracy);
    const auto& e = search.episodes().back();
    log.push_back({{"episode", search.episode() - 1},
                   {"accuracy", accuracy},
                   {"size_ratio", e.size_ratio},
                   {"bitops_m", e.bitops / 1e6},
                   {"explored", e.explored},
                   {"assignment", bits.to_json(spec)}});
    write_json_atomic(log_path, {{"key", key}, {"episodes", log}});
    progress.update(search.episode() - resumed);
  }
  progress.finish();
  restore();
  const search::AutoqEpisode& best = search.best();
  method = {{"method", "autoq"},
            {"size_ratio_target", o.size_ratio},
            {"episodes", o.autoq_episodes},
            {"warmup_episodes", ao.warmup_episodes},
            {"best_episode", search.best_index()},
            {"reward_accuracy", best.accuracy},
            {"reward_images", n},
            {"reward_images_held_out", held_out},
            {"bn_batches", o.bn_batches},
            {"episode_log", log_path.string()}};
  return best.assignment;
}

// Whether a QFA supernet trained with `elastic_bits` learned a range for every bit-width of `bits`.
bool bank_holds(const std::vector<int>& elastic_bits, const space::BitAssignment& bits) {
  if (elastic_bits.empty()) return false;
  const auto in_bank = [&](int b) {
    return b == 8 || b == space::kFloatBits ||
           std::find(elastic_bits.begin(), elastic_bits.end(), b) != elastic_bits.end();
  };
  return std::all_of(bits.layers.begin(), bits.layers.end(),
                     [&](const space::LayerBits& l) { return in_bank(l.weight) && in_bank(l.activation); });
}

// The baseline for HAWQ's sensitivity ranking: the quantised layers other than the stem and the classifier in
// a seeded random order, each lowered from the highest to the lowest of --bits until the compression ratio is
// reached (its inputs to --activation-bits, or with the weight).
space::BitAssignment random_bits(const space::ArchSpec& spec, const MixedPrecisionOptions& o) {
  const int high = *std::max_element(o.bits.begin(), o.bits.end());
  const int low = *std::min_element(o.bits.begin(), o.bits.end());
  const int input_bits = o.activation_bits == 0 ? low : o.activation_bits;
  const auto ql = space::quant_layers(spec);
  space::BitAssignment bits = space::BitAssignment::uniform(spec, high, high);
  const auto reached = [&] {
    return o.size_target ? search::size_ratio(spec, bits) <= o.size_ratio * (1 + 1e-12)
                         : space::compression_ratio(spec, bits) >= o.compression_ratio;
  };
  std::vector<size_t> order;
  for (size_t i = 0; i < ql.size(); ++i)
    if (!ql[i].first && !ql[i].classifier) order.push_back(i);
  Rng rng(o.seed);
  rng.shuffle(order);
  for (size_t i : order) {
    if (reached()) break;
    bits.layers[i] = {low, input_bits};
  }
  if (!reached()) {
    if (o.size_target)
      fail(
          "no random assignment of bits {{{}, {}}} reaches size ratio {}: the stem and the classifier stay "
          "at "
          "{} bits, so the smallest is {:.3f}",
          low, high, o.size_ratio, high, search::size_ratio(spec, bits));
    fail(
        "no random assignment of bits {{{}, {}}} reaches compression ratio {}: the stem and the classifier "
        "stay at {} bits, so the highest is {:.3f}",
        low, high, o.compression_ratio, high, space::compression_ratio(spec, bits));
  }
  return bits;
}

// The distinct bit-widths an assignment uses, weights and inputs together, ascending.
std::vector<int> bit_widths_of(const space::BitAssignment& bits) {
  std::set<int> used;
  for (const auto& l : bits.layers) used.insert({l.weight, l.activation});
  return {used.begin(), used.end()};
}

}  // namespace

json run_mixed_precision_job(const MixedPrecisionOptions& options) {
  const MixedPrecisionOptions o = checked_options(options);
  if (o.run_dir.empty()) fail("--run-dir is required: a finished `qnas train` run");
  deploy::TrainedRun run = deploy::load_run(o.run_dir);
  const fs::path out = o.out_dir.empty() ? o.run_dir / ("mixed-precision-" + o.method) : o.out_dir;
  require_writable_directory(out, "--out");
  const data::ImageDataset train = data::load_fashion_mnist(o.data_dir, "train");
  const data::ImageDataset test = data::load_fashion_mnist(o.data_dir, "test");
  const data::Normalize normalize = data::Normalize::fashion_mnist();
  const std::int64_t train_images =
      run.config.train_limit > 0 ? std::min(run.config.train_limit, train.count) : train.count;
  nn::StaticNet net = deploy::network_to_deploy(run, o.subnet, train, normalize);
  const space::ArchSpec spec = net->spec();  // a copy: `net` is extracted again in its bits below
  const auto ql = space::quant_layers(spec);

  runtime::MeasureOptions m;
  m.runs = o.runs;
  m.warmup = std::max(3, o.runs / 10);

  // The assignment. HAWQ and the latency-aware rule weigh the same Hessian traces.
  std::vector<quant::TraceEstimate> traces;
  if (o.method == "hawq" || o.method == "latency-aware") {
    traces = layer_traces(*net, train, train_images, o, out / "traces.json");
    quant::set_bits(*net, run.bits);  // the traces were taken in FP32
  }
  space::BitAssignment bits;
  json method = {{"method", o.method}};
  if (o.method == "uniform") {
    bits = space::BitAssignment::uniform(spec, o.bits[0],
                                         o.activation_bits == 0 ? o.bits[0] : o.activation_bits);
    // The stem and the classifier stay at 8 bits, as in every other method here.
    for (size_t i = 0; i < ql.size(); ++i)
      if ((ql[i].first || ql[i].classifier) && o.bits[0] < 8) bits.layers[i] = {8, 8};
  } else if (o.method == "latency-aware") {
    bits = latency_aware_bits(*net, traces, o, m, method);
  } else if (o.method == "random") {
    bits = random_bits(spec, o);
    method[o.size_target ? "size_ratio_target" : "compression_ratio_target"] =
        o.size_target ? o.size_ratio : o.compression_ratio;
    method["seed"] = o.seed;
  } else if (o.method == "given") {
    bits = nn::read_bit_assignment(o.assignment, spec);
    method["assignment"] = o.assignment.string();
  } else if (o.method == "autoq") {
    bits = autoq_bits(*net, train, train_images, normalize, o, out / "autoq-episodes.json", method);
  } else {
    std::vector<search::HawqLayerInput> inputs;
    const auto handles = nn::quant_layer_handles(*net);
    std::vector<int> sorted_bits = o.bits;
    std::sort(sorted_bits.begin(), sorted_bits.end());
    for (size_t i = 0; i < handles.size(); ++i) {
      search::HawqLayerInput in;
      in.trace = traces[i].trace_per_weight;
      for (int b : sorted_bits) in.perturbation.push_back(quant::weight_perturbation(handles[i].weight, b));
      inputs.push_back(in);
    }
    search::HawqOptions ho;
    ho.bits = sorted_bits;
    ho.compression_ratio = o.compression_ratio;
    ho.size_ratio = o.size_target ? o.size_ratio : 0;
    ho.activation_bits = o.activation_bits;
    const auto r = search::hawq_assign(spec, inputs, ho);
    bits = r.assignment;
    method = r.to_json(spec);
    method.erase("assignment");
    method[o.size_target ? "size_ratio_target" : "compression_ratio_target"] =
        o.size_target ? o.size_ratio : o.compression_ratio;
  }
  json assignment = bits.to_json(spec);
  assignment["method"] = method;
  write_json_atomic(out / "assignment.json", assignment);

  // The network in those bits. A QFA supernet learned a range per bit-width: when its bank holds every
  // assigned bit-width, the subnet is extracted in them (BN recalibrated in those bits, as its search
  // measured it). Otherwise a QAT run keeps its trained ranges where bits do not go down (nn::Scales::
  // kFitLowerBits: a weight below its trained bits gets the scale closest to its trained fake-quant, an input
  // below 4 bits LSQ's initialisation), and an FP32 run's quantizers start from min-max on the first batch.
  // Inputs at 4 bits keep their range: fitting them the same way (scaled towards 0, least squared error
  // against the 8-bit fake-quant on 512 training images) was measured worse on the QFA max subnet at uniform
  // 4 bits, 47% against 71% before any fine-tune.
  const bool from_bank = bank_holds(run.config.elastic_bits, bits);
  if (from_bank) {
    net = deploy::network_to_deploy(run, o.subnet, train, normalize, out / "assignment.json");
  } else {
    quant::set_bits(*net, 8);
    nn::apply_bits(*net, bits, nn::Scales::kFitLowerBits);
    // Inputs put below 4 bits forgot their range: they take it from training images, not the test set.
    torch::NoGradGuard no_grad;
    data::LoaderOptions options;
    options.batch_size = 256;
    options.normalize = normalize;
    data::BatchLoader loader(train, first_indices(0, train_images), options);
    loader.reset(0);
    data::Batch batch;
    net->eval();
    if (loader.next(batch)) net->forward(batch.images);
  }
  std::int64_t test_count = o.test_images > 0 ? std::min(o.test_images, test.count) : test.count;
  const auto test_indices = first_indices(0, test_count);
  std::vector<std::int64_t> labels;
  for (auto i : test_indices) labels.push_back(test.label(i));
  const auto accuracy = [&] {
    deploy::EngineResult r = deploy::run_fakequant(*net, test, test_indices, normalize);
    deploy::score(r, labels, nullptr);
    return r.top1;
  };
  const double before = accuracy();
  double after = before;
  fs::path finetuned_run;
  if (o.finetune_epochs > 0) {
    train::TrainConfig c = run.config;
    c.epochs = 0;
    c.qat_epochs = o.finetune_epochs;
    c.qat_bits = 8;
    c.qat_lr = o.finetune_lr;
    c.train_limit = std::min(o.finetune_images, train_images);
    c.test_limit = std::min<std::int64_t>(test_count, 2000);
    c.eval_random_subnets = 0;
    c.random_subnets = 0;
    // The network is one subnet now, in one assignment: a QFA supernet's elastic bits do not apply to it.
    c.elastic_bits.clear();
    c.seed = o.seed;
    // Below 4 bits the first QAT steps diverge without clipping (train::TrainConfig::grad_clip).
    const bool low = std::any_of(bits.layers.begin(), bits.layers.end(), [](const space::LayerBits& l) {
      return std::min(l.weight, l.activation) < 4;
    });
    if (low && c.grad_clip == 0) c.grad_clip = train::kLowBitGradClip;
    // One checkpoint directory per assignment: a run resumed with other bits must not continue another's QAT,
    // and one per fine-tune setting: the schedule depends on all of them.
    const std::string what =
        assignment.at("layers").dump() + fmt::format(" {} {} {} {} {}", o.finetune_epochs, c.train_limit,
                                                     o.finetune_lr, o.finetune_distill, o.seed);
    const fs::path finetune_dir = out / fmt::format("finetune-{:08x}", stable_hash(what) & 0xffffffffu);
    finetuned_run = finetune_dir;
    train::Trainer trainer(c, net.ptr(), train, test, finetune_dir);
    // The teacher: the same network in the bits it was trained in, frozen (loaded again: a static run's
    // network is the one being fine-tuned).
    nn::StaticNet teacher{nullptr};
    if (o.finetune_distill) {
      deploy::TrainedRun teacher_run = deploy::load_run(o.run_dir);
      teacher = deploy::network_to_deploy(teacher_run, o.subnet, train, normalize);
      teacher->eval();
      for (auto& p : teacher->parameters()) p.set_requires_grad(false);
      trainer.set_teacher(
          [teacher](const torch::Tensor& images) mutable { return teacher->forward(images); });
    }
    // The assigned bits are the network's own: the QAT phase keeps them.
    trainer.set_bits_policy([](int b) {
      if (b != 8) fail("mixed-precision fine-tune: unexpected {}-bit phase", b);
    });
    // The fine-tuned run loads in these bits (`qnas eval --run-dir OUT/finetune-...`).
    trainer.set_bit_assignment(bits.to_json(spec));
    trainer.run();
    net->eval();
    after = accuracy();
  }

  // Latency on this CPU: the INT8 engine runs every quantised layer at 8 bits.
  const auto t = latency::time_arch(spec, runtime::Precision::kInt8, o.threads, m, true);
  const auto t32 = latency::time_arch(spec, runtime::Precision::kFp32, o.threads, m, false);
  const auto int8 = space::BitAssignment::uniform(spec, 8, 8);
  // The assignment as this engine runs it: a block with any FP32 weight runs in FP32.
  std::vector<runtime::Precision> block_precision(spec.blocks.size(), runtime::Precision::kInt8);
  for (size_t i = 0; i < ql.size(); ++i)
    if (bits.layers[i].weight == space::kFloatBits)
      block_precision[static_cast<size_t>(ql[i].block)] = runtime::Precision::kFp32;
  int fp32_blocks = 0;
  for (auto p : block_precision) fp32_blocks += p == runtime::Precision::kFp32 ? 1 : 0;
  // Without an FP32 block the network is one INT8 segment: the program time_arch just measured.
  const auto tm = fp32_blocks == 0 ? t : latency::time_mixed(spec, block_precision, o.threads, m, true);
  json result = {{"run_dir", o.run_dir.string()},
                 {"subnet", spec.subnet},
                 {"space", spec.space},
                 {"method", method},
                 {"bits", o.method == "given" ? bit_widths_of(bits) : o.bits},
                 {"activation_bits", o.activation_bits},
                 {"test_images", test_count},
                 {"accuracy_before_finetune", before},
                 {"accuracy", after},
                 {"finetune_epochs", o.finetune_epochs},
                 {"finetune_images", o.finetune_epochs > 0 ? std::min(o.finetune_images, train_images) : 0},
                 {"finetune_distill", o.finetune_epochs > 0 && o.finetune_distill},
                 {"ranges", from_bank ? "supernet bank" : "trained, lower weights fitted"},
                 {"finetuned_run", finetuned_run.string()},
                 {"mflops", static_cast<double>(spec.macs()) / 1e6},
                 {"bitops_m", space::bitops(spec, bits) / 1e6},
                 {"bitops_int8_m", space::bitops(spec, int8) / 1e6},
                 {"compression_ratio", space::compression_ratio(spec, bits)},
                 {"size_ratio", search::size_ratio(spec, bits)},
                 {"model_size_kb", static_cast<double>(space::model_size_bits(spec, bits)) / 8192.0},
                 {"model_size_int8_kb", static_cast<double>(space::model_size_bits(spec, int8)) / 8192.0},
                 {"model_size_fp32_kb", static_cast<double>(space::fp32_size_bits(spec)) / 8192.0},
                 {"latency_int8_ms", {{"median", t.timing.median_ms}, {"min", t.timing.min_ms}}},
                 {"latency_fp32_ms", {{"median", t32.timing.median_ms}, {"min", t32.timing.min_ms}}},
                 {"latency_as_assigned_ms", {{"median", tm.timing.median_ms}, {"min", tm.timing.min_ms}}},
                 {"fp32_blocks", fp32_blocks},
                 {"latency_note",
                  "oneDNN 2.6 has INT8 and FP32 kernels only: layers below 8 bits run as INT8, so their bits "
                  "change BitOPs and model size, not latency"},
                 {"threads", o.threads}};
  write_json_atomic(out / "result.json", result);
  return result;
}

}  // namespace qnas::pipeline
