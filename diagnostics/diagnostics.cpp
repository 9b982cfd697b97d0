// The lattice instruments and the set the trainer runs (diagnostics.h).
#include "diagnostics/diagnostics.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <span>
#include <utility>

#include "autograd/autograd.h"
#include "diagnostics/lattice_metrics.h"
#include "diagnostics/observe.h"
#include "diagnostics/stability_instrument.h"
#include "nn/transformer.h"
#include "ops/ops.h"
#include "tensor/random.h"

namespace lattice::diagnostics {

namespace {

double ratio(int64_t part, int64_t whole) {
  return whole > 0 ? double(part) / double(whole) : std::nan("");
}

std::vector<float> host_values(const Tensor& t) {
  return t.to_vector<float>();
}

/// A tensor's values on the host: its own memory when it is a contiguous float32 CPU tensor,
/// else a copy (an instrument reads them while the tensor lives).
class HostValues {
 public:
  explicit HostValues(const Tensor& t) {
    if (t.device() == Device::cpu && t.is_contiguous() && t.dtype() == DType::float32) {
      values_ = std::span<const float>(t.data<float>(), size_t(t.numel()));
    } else {
      copy_ = t.to_vector<float>();
      values_ = copy_;
    }
  }
  HostValues(const HostValues&) = delete;  // values_ may point into copy_
  HostValues& operator=(const HostValues&) = delete;
  operator std::span<const float>() const {
    return values_;
  }

 private:
  std::vector<float> copy_;
  std::span<const float> values_;
};

nlohmann::json histogram_json(const OctaveHistogram& h) {
  return {{"below", h.below}, {"counts", h.counts}, {"above", h.above}};
}

/// β_t and the ULP-normalised updates: per parameter, the values the optimizer updates (its
/// fp32 master when it keeps one, else the parameter) before and after the step, ULPs on the
/// parameter's Λw at the old value. A block-scaled Λw has no per-element ULP; there a crossing
/// is a working weight whose bits changed, and no histogram is kept.
class BoundaryCrossing final : public Instrument {
 public:
  std::string name() const override {
    return "beta";
  }
  void before_update(const StepView& view) override {
    before_.clear();
    for (const Parameter& p : parameters(*view.optimizer))
      before_.push_back({host_values(p.updated), host_values(p.working)});
  }
  void end_step(const StepView& view, nlohmann::json& metrics) override {
    UpdateStatistics overall;
    CellChurn cells;
    nlohmann::json histograms = nlohmann::json::object();
    const std::vector<Parameter> after = parameters(*view.optimizer);
    for (size_t i = 0; i < after.size() && i < before_.size(); ++i) {
      const Parameter& p = after[i];
      const CellChurn churn = cell_churn(before_[i].working, HostValues(p.working));
      UpdateStatistics stats;
      if (p.lattice.scaling) {
        stats.count = churn.count;
        stats.crossed = churn.changed;
      } else {
        stats = ulp_normalized_updates(before_[i].updated, HostValues(p.updated), p.lattice.element,
                                       p.lattice.rounding.subnormals == Subnormals::flush);
        histograms[p.name] = histogram_json(stats.histogram);
        overall.histogram.merge(stats.histogram);
      }
      metrics["beta/" + p.name] = metric_value(stats.crossing_rate());
      overall.count += stats.count;
      overall.crossed += stats.crossed;
      cells.count += churn.count;
      cells.changed += churn.changed;
    }
    metrics["beta"] = metric_value(overall.crossing_rate());
    metrics["churn/w"] = metric_value(ratio(cells.changed, cells.count));
    if (!histograms.empty()) {
      histograms["all"] = histogram_json(overall.histogram);
      metrics["detail"]["ulp_histogram"] = {{"lowest_octave", OctaveHistogram::kLowestOctave},
                                            {"tensors", histograms}};
    }
  }

 private:
  struct Parameter {
    std::string name;
    Tensor working, updated;  // the parameter; its master copy, or the parameter again
    Quantizer lattice;        // its Λw
  };
  static std::vector<Parameter> parameters(const optim::Optimizer& optimizer) {
    std::map<std::string, Tensor> masters;
    for (const auto& [name, master] : optimizer.master_weights()) masters[name] = master;
    std::vector<Parameter> out;
    for (const optim::ParamGroup& group : optimizer.groups())
      for (const optim::NamedParameter& p : group.params) {
        const auto master = masters.find(p.name);
        out.push_back({p.name, p.tensor, master == masters.end() ? p.tensor : master->second,
                       optimizer.weight_lattice(p)});
      }
    return out;
  }
  struct Snapshot {
    std::vector<float> updated, working;
  };
  std::vector<Snapshot> before_;
};

/// Records every quantizer application on this thread while it lives, through a callback.
class ObserverScope {
 public:
  explicit ObserverScope(QuantizerObserver observer)
      : previous_(set_quantizer_observer(std::move(observer))) {}
  ~ObserverScope() {
    set_quantizer_observer(std::move(previous_));
  }
  ObserverScope(const ObserverScope&) = delete;
  ObserverScope& operator=(const ObserverScope&) = delete;

 private:
  QuantizerObserver previous_;
};

/// β_eff and cell-ID churn (§8.1): the rounding decisions (output bits) of every quantizer the
/// stack applies in a forward and backward of one fixed probe batch (the first observed step's)
/// with fixed random bits, compared with the previous observation's. The probe runs in eval
/// mode, puts back the buffers and the random streams, and leaves the parameters' gradients
/// cleared (the step has used them; the next one starts from zero).
class CellIdChurn final : public Instrument {
 public:
  std::string name() const override {
    return "churn";
  }
  void end_step(const StepView& view, nlohmann::json& metrics) override {
    if (!probe_)
      probe_ =
          data::Batch{view.batch->input.clone(), view.batch->target.clone(), view.batch->indices};
    std::vector<Decision> decisions;
    {
      ObserverScope observer([&](QuantizerSite site, const Quantizer&, const Tensor&,
                                 const Tensor& output) {
        decisions.push_back({concat(decisions.size(), ":", site_name(site), " ", output.shape()),
                             site, host_values(output)});
      });
      probe(view);
    }
    // Nothing to compare on the first observation, or where the stack rounds nothing.
    if (!decisions.empty() && decisions.size() == previous_.size())
      compare(previous_, decisions, metrics);
    previous_ = std::move(decisions);
  }

 private:
  struct Decision {
    std::string label;  // "<order>:<site> <shape>": the same tensor of the same program
    QuantizerSite site;
    std::vector<float> bits;
  };

  void probe(const StepView& view) {
    nn::Module& model = *view.model;
    const RandomState random = default_random_state();
    const bool training = model.training();
    std::vector<std::pair<Tensor, Tensor>> buffers;
    for (const auto& [name, buffer] : model.named_buffers())
      buffers.emplace_back(buffer, buffer.clone());
    const auto restore = [&] {
      for (const Tensor& p : model.parameters()) zero_grad(p);
      for (const auto& [buffer, saved] : buffers) buffer.copy_(saved);
      model.train(training);
      set_default_random_state(random);
    };
    try {
      model.eval();
      set_default_random_state({.seed = random.seed ^ kProbeSeed, .next_subsequence = 0});
      PrecisionScope scope(*view.stack);
      backward(view.loss(*probe_));
    } catch (...) {
      restore();
      throw;
    }
    restore();
  }

  static void compare(const std::vector<Decision>& before,
                      const std::vector<Decision>& after,
                      nlohmann::json& metrics) {
    std::map<std::string, CellChurn> by_site;
    int64_t changed_tensors = 0;
    nlohmann::json detail = nlohmann::json::array();
    for (size_t i = 0; i < after.size(); ++i) {
      if (before[i].label != after[i].label || before[i].bits.size() != after[i].bits.size())
        return;  // a different program (a schedule switched the stack): nothing to compare
      const CellChurn churn = cell_churn(before[i].bits, after[i].bits);
      changed_tensors += churn.changed > 0;
      CellChurn& site = by_site[site_name(after[i].site)];
      site.count += churn.count;
      site.changed += churn.changed;
      site.flipped_bits += churn.flipped_bits;
      detail.push_back({after[i].label, churn.changed, churn.flipped_bits, churn.count});
    }
    metrics["beta_eff"] = metric_value(ratio(changed_tensors, int64_t(after.size())));
    for (const auto& [site, churn] : by_site) {
      metrics["churn/" + site] = metric_value(ratio(churn.changed, churn.count));
      metrics["churn_bits/" + site] = metric_value(ratio(churn.flipped_bits, churn.count));
    }
    metrics["detail"]["cell_churn"] = detail;  // [label, changed, flipped bits, elements]
  }

  static constexpr uint64_t kProbeSeed = 0x70726f6265ull;  // "probe"
  std::optional<data::Batch> probe_;
  std::vector<Decision> previous_;
};

/// Saturation, overflow and underflow per quantizer site over the observed step's forward,
/// backward and write-back; zero and clipped blocks for block formats.
class Saturation final : public Instrument {
 public:
  std::string name() const override {
    return "saturation";
  }
  void begin_step(const StepView&) override {
    by_site_.clear();
    observer_.emplace(
        [this](QuantizerSite site, const Quantizer& q, const Tensor& input, const Tensor& output) {
          by_site_[site_name(site)].merge(
              quantizer_health(q, HostValues(input), HostValues(output), input.shape()));
        });
  }
  void end_step(const StepView&, nlohmann::json& metrics) override {
    observer_.reset();
    for (const auto& [site, h] : by_site_) {
      metrics["saturation/" + site] = metric_value(ratio(h.saturated, h.count));
      metrics["overflow/" + site] = metric_value(ratio(h.overflowed, h.count));
      metrics["underflow/" + site] = metric_value(ratio(h.underflowed, h.count));
      if (h.blocks > 0) {
        metrics["zero_blocks/" + site] = metric_value(ratio(h.zero_blocks, h.blocks));
        metrics["clipped_blocks/" + site] = metric_value(ratio(h.clipped_blocks, h.blocks));
      }
    }
  }

 private:
  std::map<std::string, QuantizerHealth> by_site_;
  std::optional<ObserverScope> observer_;
};

/// Fraction of each parameter's values that move when cast onto a format.
class CastChange final : public Instrument {
 public:
  explicit CastChange(Format target) : target_(target) {}
  std::string name() const override {
    return "cast:" + format_name(target_);
  }
  void end_step(const StepView& view, nlohmann::json& metrics) override {
    const std::string key = "cast_change." + format_name(target_);
    int64_t total = 0;
    double changed = 0.0;
    for (const auto& [name, p] : view.model->named_parameters()) {
      const std::vector<float> values = host_values(p);
      const double rate = cast_change_rate(values, target_);
      metrics[key + "/" + name] = metric_value(rate);
      if (std::isfinite(rate)) {
        changed += rate * double(values.size());
        total += int64_t(values.size());
      }
    }
    metrics[key] = metric_value(total > 0 ? changed / double(total) : std::nan(""));
  }

 private:
  Format target_;
};

/// Per attention head of the observed step's forward: softmax entropy, the logits' standard
/// deviation before (S τ_h) and after (S) the temperature, and τ_h.
class AttentionStatistics final : public Instrument {
 public:
  std::string name() const override {
    return "attention";
  }
  void begin_step(const StepView& view) override {
    results_.clear();
    modules_.clear();
    for (auto& [name, module] : view.model->named_modules())
      if (auto* attention = dynamic_cast<nn::MultiHeadAttention*>(module)) {
        modules_.emplace_back(name, attention);
        attention->set_probe([this, key = name, attention](const nn::AttentionInternals& a) {
          observe(key, *attention, a);
        });
      }
  }
  void end_step(const StepView&, nlohmann::json& metrics) override {
    for (auto& [name, attention] : modules_) attention->set_probe({});
    for (const auto& [key, value] : results_) metrics[key] = metric_value(value);
  }

 private:
  void observe(const std::string& name,
               const nn::MultiHeadAttention& attention,
               const nn::AttentionInternals& a) {
    const int64_t batch = a.probabilities.shape(0), heads = a.probabilities.shape(1),
                  rows = a.probabilities.shape(2), columns = a.probabilities.shape(3);
    const std::vector<float> tau = host_values(attention.temperature());
    const std::vector<double> temperature(tau.begin(), tau.end()), ones(size_t(heads), 1.0);
    const std::vector<float> scores = host_values(a.scores);
    const std::vector<double> entropy =
        softmax_entropy_per_head(host_values(a.probabilities), batch, heads, rows, columns);
    const std::vector<double> before =
        logit_std_per_head(scores, batch, heads, rows, columns, temperature);
    const std::vector<double> after = logit_std_per_head(scores, batch, heads, rows, columns, ones);
    for (int64_t h = 0; h < heads; ++h) {
      const std::string where = concat("/", name, ".head", h);
      results_["entropy" + where] = entropy[size_t(h)];
      results_["logit_std" + where] = before[size_t(h)];
      results_["logit_std_scaled" + where] = after[size_t(h)];
      results_["temperature" + where] = temperature[size_t(h)];
    }
  }
  std::vector<std::pair<std::string, nn::MultiHeadAttention*>> modules_;
  std::map<std::string, double> results_;
};

/// Layer SNR against an fp32 shadow forward of the same weights and batch (after the update),
/// the error's correlation with the signal on residual branches (attention and feed-forward
/// modules), and r_block per transformer block.
class LayerSnr final : public Instrument {
 public:
  std::string name() const override {
    return "snr";
  }
  void end_step(const StepView& view, nlohmann::json& metrics) override {
    const CaptureFilter every_module = [](const std::string& name, const nn::Module&) {
      return !name.empty();
    };
    const ForwardCapture reference = capture_forward(
        *view.model, *view.stack, ShadowPrecision::fp32, view.loss, *view.batch, every_module);
    const ForwardCapture run = capture_forward(*view.model, *view.stack, ShadowPrecision::run,
                                               view.loss, *view.batch, every_module);
    std::map<std::string, const nn::Module*> modules;
    for (auto& [name, module] : view.model->named_modules()) modules[name] = module;
    double r_block_max = std::nan("");
    for (const auto& [name, y_fp] : reference.outputs) {
      const auto found = run.outputs.find(name);
      if (found == run.outputs.end() || !is_floating(y_fp.dtype()) ||
          found->second.shape() != y_fp.shape())
        continue;
      const std::vector<float> fp = host_values(y_fp), q = host_values(found->second);
      metrics["snr_db/" + name] = metric_value(snr_db(fp, q));
      const std::string leaf = name.substr(name.rfind('.') + 1);
      if (leaf == "attention" || leaf == "feed_forward")
        metrics["error_corr/" + name] = metric_value(error_correlation(fp, q));
      if (dynamic_cast<const nn::TransformerBlock*>(modules[name])) {
        double error = 0.0, signal = 0.0;
        for (size_t i = 0; i < fp.size(); ++i) {
          error += (double(q[i]) - fp[i]) * (double(q[i]) - fp[i]);
          signal += double(fp[i]) * fp[i];
        }
        const double r = std::sqrt(error / signal);
        metrics["r_block/" + name] = metric_value(r);
        if (!(r <= r_block_max)) r_block_max = r;
      }
    }
    if (!std::isnan(r_block_max)) metrics["r_block_max"] = metric_value(r_block_max);
  }
};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t end = text.find(separator, start);
    out.push_back(text.substr(start, end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

}  // namespace

std::vector<std::unique_ptr<Instrument>> make_instruments(const std::string& list) {
  std::vector<std::unique_ptr<Instrument>> out;
  std::vector<std::string> names;
  for (const std::string& item : split(list, ',')) {
    if (item == "default")
      names.insert(names.end(), {"beta", "attention"});
    else if (item == "all")
      names.insert(names.end(), {"beta", "churn", "saturation", "attention", "snr", "stability"});
    else if (!item.empty())
      names.push_back(item);
  }
  for (const std::string& name : names) {
    bool repeated = false;
    for (const auto& instrument : out) repeated |= instrument->name() == name;
    if (repeated) continue;
    if (name == "beta")
      out.push_back(std::make_unique<BoundaryCrossing>());
    else if (name == "churn")
      out.push_back(std::make_unique<CellIdChurn>());
    else if (name == "saturation")
      out.push_back(std::make_unique<Saturation>());
    else if (name == "attention")
      out.push_back(std::make_unique<AttentionStatistics>());
    else if (name == "snr")
      out.push_back(std::make_unique<LayerSnr>());
    else if (name == "stability")
      out.push_back(std::make_unique<StabilityInstrument>());
    else if (name.starts_with("cast:"))
      out.push_back(std::make_unique<CastChange>(parse_format(name.substr(5))));
    else
      throw Error(concat("[diagnostics] unknown instrument \"", name,
                         "\": expected beta, churn, saturation, cast:FORMAT, attention, snr, "
                         "stability, default or all"));
  }
  return out;
}

Diagnostics::Diagnostics(std::vector<std::unique_ptr<Instrument>> instruments,
                         int64_t every,
                         const std::filesystem::path& detail_path,
                         bool append)
    : instruments_(std::move(instruments)), every_(every), detail_path_(detail_path) {
  LATTICE_CHECK(every > 0, "[diagnostics] --diagnostics-every ", every,
                ": expected a positive step count");
  if (instruments_.empty()) return;
  detail_.open(detail_path_, append ? std::ios::app : std::ios::trunc);
  LATTICE_CHECK(detail_.good(), "[diagnostics] ", detail_path_.string(),
                ": cannot open for writing: ", std::strerror(errno));
}

void Diagnostics::begin_step(const StepView& view) {
  for (const auto& instrument : instruments_) instrument->begin_step(view);
}

void Diagnostics::before_update(const StepView& view) {
  for (const auto& instrument : instruments_) instrument->before_update(view);
}

void Diagnostics::end_step(const StepView& view, nlohmann::json& metrics) {
  for (const auto& instrument : instruments_) instrument->end_step(view, metrics);
  if (!metrics.contains("detail")) return;
  detail_ << nlohmann::json{{"step", view.step}, {"detail", metrics["detail"]}}.dump() << '\n'
          << std::flush;
  metrics.erase("detail");
  LATTICE_CHECK(detail_.good(), "[diagnostics] ", detail_path_.string(),
                ": write failed: ", std::strerror(errno));
}

}  // namespace lattice::diagnostics
