#include "pipeline/qfa_search_job.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "deploy/deploy.h"
#include "pipeline/search_plot.h"
#include "pipeline/search_support.h"
#include "search/accuracy_predictor.h"
#include "search/pareto.h"
#include "space/arch_spec.h"
#include "space/sampling.h"

namespace qnas::pipeline {
namespace {

using nlohmann::json;
using search::QfaGenome;
using search::QfaSpace;
namespace fs = std::filesystem;

constexpr std::uint64_t kPredictorSampleStream = 0x7f4a7c159e3779b9ull;

// The cost the search minimises, exactly, from the ArchSpec: INT8-equivalent MMACs or the model in KiB.
struct Cost {
  bool size = false;
  std::string name() const { return size ? "size" : "bitops"; }
  std::string label() const { return size ? "model size (KiB)" : "BitOPs (M INT8-equivalent MACs)"; }
  double operator()(const space::ArchSpec& spec, const space::BitAssignment& bits) const {
    return size ? static_cast<double>(space::model_size_bits(spec, bits)) / 8.0 / 1024.0
                : space::bitops(spec, bits) / 1e6;
  }
};

struct Measured {
  std::string name, key;
  double predicted = -1, heldout = 0, test = 0, bitops_m = 0, size_kib = 0, mflops = 0;
};

json to_json(const Measured& m) {
  return {{"name", m.name}, {"network", m.key},       {"predicted", m.predicted}, {"heldout", m.heldout},
          {"test", m.test}, {"bitops_m", m.bitops_m}, {"size_kib", m.size_kib},   {"mflops", m.mflops}};
}

// Up to `n` members spread evenly along the front (by index, cost ascending), the ends included.
std::vector<size_t> spread(size_t size, int n) {
  std::set<size_t> picked;
  if (size == 0 || n <= 0) return {};
  if (n == 1 || size == 1) return {size - 1};
  for (int i = 0; i < n; ++i)
    picked.insert(
        static_cast<size_t>(static_cast<double>(i) * static_cast<double>(size - 1) / (n - 1) + 0.5));
  return {picked.begin(), picked.end()};
}

class Job {
 public:
  explicit Job(QfaSearchJobOptions o) : o_(std::move(o)) {}

  QfaSearchJobResult run() {
    const auto start = std::chrono::steady_clock::now();
    if (o_.objective != "bitops" && o_.objective != "size")
      fail("unknown objective '{}': use bitops or size (or latency, the INT8 latency search)", o_.objective);
    cost_.size = o_.objective == "size";
    if (o_.predictor_train < 10 || o_.predictor_test < 2)
      fail("--predictor-train must be at least 10 and --predictor-test at least 2 (got {} and {})",
           o_.predictor_train, o_.predictor_test);
    if (o_.front_test < 1) fail("--front-test must be at least 1, got {}", o_.front_test);
    run_ = deploy::load_run(o_.run_dir);
    if (!run_.is_supernet())
      fail("run {} is a single network: `subnet-search --objective {}` needs a supernet run",
           o_.run_dir.string(), o_.objective);
    if (run_.config.elastic_bits.empty())
      fail(
          "run {} was trained without elastic bits, so its supernet knows one bit-width: train it with `qnas "
          "train --elastic-bits 2 3 4` (QFA), or search it by latency (--objective latency)",
          o_.run_dir.string());
    space_.emplace(*run_.space, run_.config.elastic_bits);
    if (o_.out_dir.empty()) o_.out_dir = o_.run_dir / ("qfa-search-" + o_.objective);
    fs::create_directories(o_.out_dir / "assignments");
    data_ = load_search_data(run_, o_.data, o_.data_dir, o_.test_images, o_.heldout_images);
    json identity = run_identity(run_, data_, o_.data ? o_.data->train.source : o_.data_dir);
    identity["elastic_bits"] = run_.config.elastic_bits;
    cache_.emplace(o_.out_dir / "evaluations.json", identity);
    heldout_.emplace(run_, data_, data_.train, data_.heldout);

    fit_predictor();
    search();
    measure_final();
    write_outputs(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return {results_, report_, o_.out_dir};
  }

 private:
  space::ArchSpec spec_of(const QfaGenome& g) const {
    return space::build_arch_spec(space_->space(), g.subnet);
  }

  double heldout_accuracy(const QfaGenome& g) {
    const std::string key = space_->key(g);
    if (auto a = cache_->find(key)) return *a;
    const double a = (*heldout_)(g.subnet, space_->assignment(g));
    cache_->put(key, a);
    return a;
  }

  // The max and min subnets at each uniform bit-width: the baselines the front is compared with.
  std::vector<std::pair<std::string, QfaGenome>> uniform_networks() const {
    std::vector<std::pair<std::string, QfaGenome>> out;
    for (int bits : space_->choices()) {
      for (const auto& [arch, subnet] :
           {std::pair<std::string, space::Subnet>{"max", space::max_subnet(space_->space())},
            {"min", space::min_subnet(space_->space())}}) {
        const space::ArchSpec spec = space::build_arch_spec(space_->space(), subnet);
        out.emplace_back(fmt::format("uniform{}-{}", bits, arch),
                         space_->genome_of(subnet, search::qfa_uniform(spec, bits)));
      }
    }
    return out;
  }

  void fit_predictor() {
    Rng rng(o_.search.seed ^ kPredictorSampleStream);
    std::vector<QfaGenome> sample;
    std::set<std::string> keys;
    // The uniform networks train the predictor first: random networks rarely land near the extremes.
    for (const auto& [name, g] : uniform_networks()) {
      if (keys.insert(space_->key(g)).second) sample.push_back(g);
    }
    const int wanted = o_.predictor_train + o_.predictor_test + static_cast<int>(sample.size());
    for (int tries = 0; static_cast<int>(sample.size()) < wanted && tries < 100 * wanted; ++tries) {
      QfaGenome g = space_->random(rng);
      if (keys.insert(space_->key(g)).second) sample.push_back(std::move(g));
    }
    ProgressLine progress("QFA predictor sample", static_cast<std::int64_t>(sample.size()), "nets");
    std::vector<std::vector<double>> x_train, x_test;
    std::vector<double> y_train, y_test;
    for (size_t i = 0; i < sample.size(); ++i) {
      const double a = heldout_accuracy(sample[i]);
      const bool train = static_cast<int>(i) < static_cast<int>(sample.size()) - o_.predictor_test;
      (train ? x_train : x_test).push_back(space_->features(sample[i]));
      (train ? y_train : y_test).push_back(a);
      progress.update(static_cast<std::int64_t>(i + 1), fmt::format("last {:.2f}%", 100 * a));
    }
    progress.finish();
    predictor_.fit(x_train, y_train);
    std::vector<double> predicted;
    for (const auto& x : x_test) predicted.push_back(predictor_.predict(x));
    quality_ = search::predictor_quality(predicted, y_test);
    quality_.train = static_cast<int>(y_train.size());
    std::fprintf(stderr, "QFA predictor: Kendall tau %.3f, RMSE %.2f points on %d unseen networks\n",
                 quality_.kendall_tau, 100 * quality_.rmse, quality_.test);
  }

  void search() {
    ProgressLine progress("QFA NSGA-II", o_.search.generations, "generations");
    search::QfaSearchOptions options = o_.search;
    options.on_generation = [&](int done, int) { progress.update(done); };
    for (const auto& [name, g] : uniform_networks()) options.initial.push_back(g);
    result_ = search::nsga2_qfa(
        *space_, [&](const QfaGenome& g) { return predictor_.predict(space_->features(g)); },
        [&](const QfaGenome& g) { return cost_(spec_of(g), space_->assignment(g)); }, options);
    progress.finish(
        fmt::format("{} networks predicted, front of {}", result_.evaluated.size(), result_.front.size()));
  }

  Measured measure(const std::string& name, const QfaGenome& g, SupernetAccuracy& test, double predicted) {
    Measured m;
    m.name = name;
    m.key = space_->key(g);
    m.predicted = predicted;
    const space::ArchSpec spec = spec_of(g);
    const space::BitAssignment bits = space_->assignment(g);
    m.heldout = heldout_accuracy(g);
    m.test = test(g.subnet, bits);
    m.bitops_m = space::bitops(spec, bits) / 1e6;
    m.size_kib = static_cast<double>(space::model_size_bits(spec, bits)) / 8.0 / 1024.0;
    m.mflops = static_cast<double>(spec.macs()) / 1e6;
    write_json_atomic(o_.out_dir / "assignments" / (name + ".json"), bits.to_json(spec));
    return m;
  }

  void measure_final() {
    SupernetAccuracy test(run_, data_, data_.test, index_range(0, data_.test.count));
    const auto picks = spread(result_.front.size(), o_.front_test);
    ProgressLine progress("QFA final networks",
                          static_cast<std::int64_t>(picks.size() + 2 * space_->choices().size()), "nets");
    int done = 0;
    for (size_t i = 0; i < picks.size(); ++i) {
      const auto& c = result_.front[picks[i]];
      front_.push_back(measure(fmt::format("front{}", i + 1), space_->parse_key(c.key), test, c.accuracy));
      progress.update(++done);
    }
    for (const auto& [name, g] : uniform_networks()) {
      uniform_.push_back(measure(name, g, test, predictor_.predict(space_->features(g))));
      progress.update(++done);
    }
    progress.finish();
  }

  // The non-dominated networks by measured test accuracy and cost among everything measured, the seeded
  // uniform networks included: NSGA-II's front is chosen by predicted accuracy, and a weak predictor can drop
  // a seed the measurements keep.
  std::vector<const Measured*> measured_front() const {
    std::vector<const Measured*> all;
    std::set<std::string> keys;
    for (const auto* list : {&front_, &uniform_}) {
      for (const auto& m : *list)
        if (keys.insert(m.key).second) all.push_back(&m);
    }
    std::vector<search::Objectives> points;
    for (const auto* m : all) points.push_back({m->test, cost_.size ? m->size_kib : m->bitops_m});
    std::vector<const Measured*> out;
    for (size_t i : search::pareto_front(points)) out.push_back(all[i]);
    std::sort(out.begin(), out.end(), [&](const Measured* a, const Measured* b) {
      return (cost_.size ? a->size_kib : a->bitops_m) < (cost_.size ? b->size_kib : b->bitops_m);
    });
    return out;
  }

  void write_outputs(double seconds) {
    json front = json::array(), uniform = json::array(), all = json::array(), measured = json::array();
    std::string measured_names;
    for (const auto* m : measured_front()) {
      measured.push_back(m->name);
      measured_names +=
          fmt::format("{}{} ({:.2f}%)", measured_names.empty() ? "" : ", ", m->name, 100 * m->test);
    }
    for (const auto& m : front_) front.push_back(to_json(m));
    for (const auto& m : uniform_) uniform.push_back(to_json(m));
    for (const auto& c : result_.front)
      all.push_back({{"network", c.key}, {"predicted", c.accuracy}, {"cost", c.cost}});
    results_ = {{"run", o_.run_dir.string()},
                {"objective", o_.objective},
                {"elastic_bits", space_->choices()},
                {"predictor",
                 {{"train", quality_.train},
                  {"test", quality_.test},
                  {"kendall_tau", quality_.kendall_tau},
                  {"rmse", quality_.rmse}}},
                {"search",
                 {{"population", o_.search.population},
                  {"generations", o_.search.generations},
                  {"seed", o_.search.seed},
                  {"predicted_networks", result_.evaluated.size()}}},
                {"supernet_evaluations", cache_->size()},
                {"front", front},
                {"uniform", uniform},
                {"predicted_front", all},
                {"measured_front", measured},
                {"seconds", seconds}};
    write_json_atomic(o_.out_dir / "front.json", results_);

    std::string csv = "name,heldout,test,predicted,bitops_m,size_kib,mflops,network\n";
    for (const auto* list : {&front_, &uniform_}) {
      for (const auto& m : *list)
        csv += fmt::format("{},{:.4f},{:.4f},{:.4f},{:.4f},{:.2f},{:.3f},{}\n", m.name, m.heldout, m.test,
                           m.predicted, m.bitops_m, m.size_kib, m.mflops, m.key);
    }
    write_file_atomic(o_.out_dir / "front.csv", csv);

    FrontPlot plot;
    plot.title = fmt::format("QFA NSGA-II on {}, {} vs test accuracy", run_.space->encode(), cost_.name());
    plot.algorithm = "QFA";
    plot.x_label = cost_.label();
    plot.y_label = "test accuracy (%)";
    plot.baseline_label = "uniform bits";
    auto point = [&](const Measured& m) {
      search::Candidate c;
      c.subnet = m.key;
      c.accuracy = m.test;
      c.latency_ms = cost_.size ? m.size_kib : m.bitops_m;
      return c;
    };
    for (const auto& m : front_) plot.front.push_back(point(m));
    for (const auto& m : uniform_) plot.baseline_evaluated.push_back(point(m));
    write_file_atomic(o_.out_dir / "front.svg", front_svg(plot));

    std::string md = fmt::format(
        "# QFA search of {} by {}\n\nRun `{}`, elastic bits {}, {} supernet evaluations on {} held-out "
        "images, "
        "predictor Kendall tau {:.3f} / RMSE {:.2f} points on {} unseen networks; NSGA-II population {} x {} "
        "generations ({} networks predicted); {:.0f} s.\n\n",
        run_.space->encode(), cost_.name(), o_.run_dir.string(), fmt::join(space_->choices(), " "),
        cache_->size(), data_.heldout.size(), quality_.kendall_tau, 100 * quality_.rmse, quality_.test,
        o_.search.population, o_.search.generations, result_.evaluated.size(), seconds);
    md +=
        "| network | test | held-out | predicted | BitOPs (M) | size KiB | MFLOPs |\n| --- | ---: | ---: | "
        "---: | ---: | ---: | ---: |\n";
    for (const auto* list : {&front_, &uniform_}) {
      for (const auto& m : *list)
        md += fmt::format("| {} | {:.2f}% | {:.2f}% | {:.2f}% | {:.2f} | {:.1f} | {:.2f} |\n", m.name,
                          100 * m.test, 100 * m.heldout, 100 * m.predicted, m.bitops_m, m.size_kib, m.mflops);
    }
    md += fmt::format(
        "\nMeasured front (test accuracy against {}, over every network above, the seeded uniform ones "
        "included): {}.\n",
        cost_.name(), measured_names);
    md +=
        "\nEach network's subnet and bits: `front.json` (`network` = encoding:weight/input digits per "
        "layer); its "
        "bit assignment: `assignments/NAME.json`.\n";
    report_ = md;
    write_file_atomic(o_.out_dir / "search.md", md);
  }

  QfaSearchJobOptions o_;
  Cost cost_;
  deploy::TrainedRun run_;
  std::optional<QfaSpace> space_;
  SearchData data_;
  std::optional<EvaluationCache> cache_;
  std::optional<SupernetAccuracy> heldout_;
  search::RidgePredictor predictor_;
  search::PredictorQuality quality_;
  search::QfaSearchResult result_;
  std::vector<Measured> front_, uniform_;
  json results_;
  std::string report_;
};

}  // namespace

QfaSearchJobResult run_qfa_search_job(QfaSearchJobOptions options) {
  return Job(std::move(options)).run();
}

}  // namespace qnas::pipeline
