// Curves, Pareto scatter and run summaries (see plot.h). gnuplot reads one script with the data
// inlined as datablocks, so a kept script redraws the figure on its own.
#include "tools/plot.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "tools/process.h"

namespace lattice::tools {

namespace fs = std::filesystem;

namespace {

bool gnuplot_accepts(const std::string& command) {
  try {
    return run_logged({"gnuplot", "-e", command}, "/dev/null").ok();
  } catch (const Error&) {
    return false;
  }
}

std::string terminal_for(const std::string& out) {
  const std::string ext = fs::path(out).extension().string();
  if (ext == ".svg") return "set terminal svg size 1000,620 dynamic background rgb 'white'";
  LATTICE_CHECK(ext == ".png", "[plot] ", out, ": expected a .png or .svg output file");
  static const bool cairo = gnuplot_accepts("set terminal pngcairo");
  return cairo ? "set terminal pngcairo size 1400,720 noenhanced"
               : "set terminal png size 1400,720 noenhanced";
}

/// Text inside a gnuplot double-quoted string.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string number(double v) {
  if (!std::isfinite(v)) return "NaN";
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", v);
  return text;
}

/// Runs gnuplot on the script; keeps it at `keep` or removes it.
void run_gnuplot(const std::string& script_text, const std::string& out, const std::string& keep) {
  const fs::path script =
      keep.empty() ? fs::temp_directory_path() / concat("lattice-plot-", ::getpid(), ".gp")
                   : fs::path(keep);
  const fs::path log = fs::temp_directory_path() / concat("lattice-plot-", ::getpid(), ".log");
  {
    std::ofstream file(script);
    LATTICE_CHECK(file.good(), "[plot] cannot write ", script.string());
    file << script_text;
  }
  if (!fs::path(out).parent_path().empty()) fs::create_directories(fs::path(out).parent_path());
  ExitStatus status;
  try {
    status = run_logged({"gnuplot", script.string()}, log.string());
  } catch (const Error& e) {
    if (keep.empty()) fs::remove(script);
    throw Error(concat("[plot] gnuplot cannot be run (", e.what(), "); install gnuplot"));
  }
  std::string messages = file_tail(log.string(), 5);
  std::replace(messages.begin(), messages.end(), '\n', ' ');
  fs::remove(log);
  if (keep.empty()) fs::remove(script);
  LATTICE_CHECK(status.ok(), "[plot] gnuplot failed on ", out, " (", status.text(),
                "): ", messages);
  LATTICE_CHECK(fs::exists(out) && fs::file_size(out) > 0, "[plot] gnuplot wrote no ", out);
}

struct Series {
  std::vector<std::pair<double, double>> points;
};

Series read_metric(const std::string& dir, const std::string& metric, const std::string& x) {
  const fs::path path = fs::path(dir) / "metrics.jsonl";
  std::ifstream in(path);
  LATTICE_CHECK(in.good(), "[plot] ", path.string(), ": no such file (is ", dir, " a run folder?)");
  Series s;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception&) {
      // The last line of a run killed mid-write may be cut short; any other is an error.
      if (in.peek() == EOF) break;
      throw Error(concat("[plot] ", path.string(), ":", number, ": not a JSON object"));
    }
    if (!j.contains(metric) || !j.contains(x)) continue;
    const double xv = j[x].is_number() ? j[x].get<double>() : NAN;
    const double yv = j[metric].is_number() ? j[metric].get<double>() : NAN;
    s.points.emplace_back(xv, yv);
  }
  return s;
}

std::string axis_label(const std::string& name) {
  static const std::map<std::string, std::string> labels = {{"loss", "training loss"},
                                                            {"val_loss", "validation loss"},
                                                            {"val_accuracy", "validation accuracy"},
                                                            {"step", "step"},
                                                            {"epoch", "epoch"},
                                                            {"seconds", "seconds"}};
  const auto it = labels.find(name);
  return it == labels.end() ? name : it->second;
}

}  // namespace

int64_t UlpHistogram::total() const {
  int64_t sum = below + above;
  for (int64_t c : counts) sum += c;
  return sum;
}

double UlpHistogram::mass_above_half() const {
  int64_t crossing = above;
  for (size_t k = 0; k < counts.size(); ++k)
    if (int(k) + lowest_octave >= -1) crossing += counts[k];  // [2^-1, ...): at least ½
  return total() > 0 ? double(crossing) / double(total()) : NAN;
}

UlpHistogram read_ulp_histogram(const std::string& dir, int64_t step) {
  const fs::path path = fs::path(dir) / "diagnostics.jsonl";
  std::ifstream in(path);
  LATTICE_CHECK(in.good(), "[plot] ", path.string(),
                ": no such file (run the trainer with --diagnostics beta)");
  std::optional<UlpHistogram> found;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) {
      if (in.peek() == EOF) break;  // a run killed mid-write
      throw Error(concat("[plot] ", path.string(), ":", number, ": not a JSON object"));
    }
    if (!j.contains("step") || !j["step"].is_number_integer() || !j.contains("detail") ||
        !j["detail"].contains("ulp_histogram"))
      continue;
    if (step > 0 && j["step"].get<int64_t>() != step) continue;
    try {
      const nlohmann::json& h = j["detail"]["ulp_histogram"];
      const nlohmann::json& all = h.at("tensors").at("all");
      found = UlpHistogram{.step = j["step"].get<int64_t>(),
                           .lowest_octave = h.at("lowest_octave").get<int>(),
                           .counts = all.at("counts").get<std::vector<int64_t>>(),
                           .below = all.at("below").get<int64_t>(),
                           .above = all.at("above").get<int64_t>()};
    } catch (const nlohmann::json::exception&) {
      throw Error(concat("[plot] ", path.string(), ":", number,
                         ": ulp_histogram needs lowest_octave and tensors.all with below, counts "
                         "and above"));
    }
  }
  LATTICE_CHECK(found.has_value(), "[plot] ", path.string(), ": no ULP histogram",
                step > 0 ? concat(" at step ", step) : std::string(),
                " (the beta instrument writes one per observed step)");
  return *found;
}

void plot_ulp_histograms(const std::vector<PlotRun>& runs,
                         const std::vector<UlpHistogram>& histograms,
                         const std::string& out,
                         const std::string& script) {
  std::ostringstream gp;
  gp << terminal_for(out) << "\nset output " << quoted(out) << "\n"
     << "set termoption noenhanced\nset grid\nset key top left\n"
     << "set xlabel \"log2(|update| / ULP)\"\nset ylabel \"fraction of parameters\"\n"
     << "set arrow from -1, graph 0 to -1, graph 1 nohead dashtype 2\n"
     << "set label \"1/2 ULP\" at -1, graph 0.95 offset 0.5,0\n";
  std::vector<std::string> plots;
  for (size_t i = 0; i < runs.size(); ++i) {
    const UlpHistogram& h = histograms[i];
    const int64_t total = h.total();
    const std::string name = concat("$histogram", i);
    gp << name << " << EOD\n";
    for (size_t k = 0; k < h.counts.size(); ++k)
      gp << number(double(int(k) + h.lowest_octave) + 0.5) << " "
         << number(total > 0 ? double(h.counts[k]) / double(total) : 0.0) << "\n";
    gp << "EOD\n";
    plots.push_back(concat(name, " using 1:2 with histeps linewidth 1.5 title ",
                           quoted(concat(runs[i].label, " (step ", h.step, ")"))));
  }
  gp << "plot ";
  for (size_t i = 0; i < plots.size(); ++i) gp << (i ? ", \\\n     " : "") << plots[i];
  gp << "\n";
  run_gnuplot(gp.str(), out, script);
}

bool gnuplot_available() {
  return gnuplot_accepts("set terminal");
}

std::vector<PlotRun> label_runs(const std::vector<std::string>& dirs) {
  std::map<std::string, int> count;
  std::vector<PlotRun> runs;
  const auto name_of = [](const std::string& dir) {
    fs::path p = fs::path(dir).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p;
  };
  for (const std::string& d : dirs) ++count[name_of(d).filename().string()];
  for (const std::string& d : dirs) {
    const fs::path p = name_of(d);
    std::string label = p.filename().string();
    if (count[label] > 1 && !p.parent_path().filename().empty())
      label = (p.parent_path().filename() / p.filename()).string();
    runs.push_back({d, label});
  }
  return runs;
}

void plot_curves(const CurvesRequest& request) {
  LATTICE_CHECK(!request.runs.empty(), "[plot] no run folders given");
  LATTICE_CHECK(request.x == "step" || request.x == "epoch" || request.x == "seconds",
                "[plot] --x ", request.x, ": expected step, epoch or seconds");
  std::ostringstream gp;
  gp << terminal_for(request.out) << "\nset output " << quoted(request.out) << "\n"
     << "set termoption noenhanced\nset grid\n";
  const size_t panels = request.metrics.size();
  // Fixed margins: panels of equal width on the left 70%, the key once at the right.
  gp << "set key at screen 0.72, screen 0.9 left top vertical Left reverse\n"
     << "set bmargin at screen 0.1\nset tmargin at screen 0.9\n";
  if (panels > 1)
    gp << "set multiplot layout 1," << panels
       << (request.title.empty() ? "" : concat(" title ", quoted(request.title))) << "\n";
  else if (!request.title.empty())
    gp << "set title " << quoted(request.title) << "\n";
  // Every panel spans the same x range, so evaluations line up with the training curve.
  std::vector<std::vector<Series>> series(panels);
  double x_low = INFINITY, x_high = -INFINITY;
  for (size_t panel = 0; panel < panels; ++panel)
    for (const PlotRun& run : request.runs) {
      series[panel].push_back(read_metric(run.dir, request.metrics[panel], request.x));
      for (const auto& [x, y] : series[panel].back().points)
        if (std::isfinite(x)) x_low = std::min(x_low, x), x_high = std::max(x_high, x);
    }
  // Any key of metrics.jsonl plots (a diagnostic such as beta or churn/gemm.x too); a key that
  // no run logs is a misspelling where the request says so.
  for (size_t panel = 0; panel < panels && request.require_logged; ++panel) {
    bool logged = false;
    for (const Series& s : series[panel]) logged |= !s.points.empty();
    LATTICE_CHECK(logged, "[plot] --metric ", request.metrics[panel],
                  ": no run logs it (expected a key of metrics.jsonl: loss, val_loss, "
                  "val_accuracy, or a --diagnostics metric such as beta)");
  }
  if (std::isfinite(x_low) && x_high > x_low)
    gp << "set xrange [" << number(x_low) << ":" << number(x_high) << "]\n";
  const double width = 0.64 / double(panels);
  int block = 0;
  for (size_t panel = 0; panel < panels; ++panel) {
    const std::string& metric = request.metrics[panel];
    gp << "set lmargin at screen " << number(0.07 + double(panel) * width + (panel ? 0.05 : 0.0))
       << "\nset rmargin at screen " << number(0.07 + double(panel + 1) * width - 0.02) << "\n";
    std::vector<std::string> plots;
    double low = INFINITY, high = -INFINITY;
    for (size_t i = 0; i < request.runs.size(); ++i) {
      const PlotRun& run = request.runs[i];
      const std::string name = concat("$run", block++);
      gp << name << " << EOD\n";
      for (const auto& [x, y] : series[panel][i].points) {
        gp << number(x) << " " << number(y) << "\n";
        if (std::isfinite(y)) low = std::min(low, y), high = std::max(high, y);
      }
      gp << "EOD\n";
      // A validation metric has a point per evaluation: draw the points, not only the line.
      plots.push_back(concat(name, " using 1:2 with ",
                             metric == "loss" ? "lines" : "linespoints pointtype 7 pointsize 0.6",
                             " linewidth 1.5 title ", quoted(run.label)));
    }
    const bool log_scale = metric != "val_accuracy" && low > 0 && high / low > 100 &&
                           (metric == "loss" || metric == "val_loss");
    gp << (log_scale ? "set logscale y\n" : "unset logscale y\n");
    gp << "set xlabel " << quoted(axis_label(request.x)) << "\nset ylabel "
       << quoted(axis_label(metric)) << "\n";
    if (panel == 1) gp << "set key off\n";
    if (std::isfinite(low)) {
      gp << "plot ";
      for (size_t i = 0; i < plots.size(); ++i) gp << (i ? ", \\\n     " : "") << plots[i];
      gp << "\n";
    } else {  // nothing finite to draw (every run diverged or never evaluated): say so
      gp << "set label 1 \"no finite values\" at graph 0.5,0.5 center\nplot [0:1] [0:1] NaN "
            "notitle\n"
         << "unset label 1\n";
    }
  }
  if (panels > 1) gp << "unset multiplot\n";
  run_gnuplot(gp.str(), request.out, request.script);
}

std::vector<size_t> pareto_frontier(const std::vector<ScatterPoint>& points) {
  std::vector<size_t> order;
  for (size_t i = 0; i < points.size(); ++i)
    if (std::isfinite(points[i].x) && std::isfinite(points[i].y)) order.push_back(i);
  // By x, and at equal x the best y first: each point is on the frontier when its y beats every
  // point before it.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return points[a].x != points[b].x ? points[a].x < points[b].x : points[a].y > points[b].y;
  });
  std::vector<size_t> frontier;
  double best = -INFINITY;
  for (size_t i : order)
    if (points[i].y > best) {
      frontier.push_back(i);
      best = points[i].y;
    }
  return frontier;
}

void plot_pareto(const std::vector<ScatterPoint>& points,
                 const std::vector<size_t>& frontier,
                 const std::string& title,
                 const std::string& out,
                 const std::string& script) {
  std::ostringstream gp;
  gp << terminal_for(out) << "\nset output " << quoted(out) << "\n"
     << "set termoption noenhanced\nset grid\nset key outside right top vertical\n"
     << "set xlabel \"complexity points\"\nset ylabel \"score\"\n";
  if (!title.empty()) gp << "set title " << quoted(title) << "\n";
  std::vector<std::string> series;
  for (const ScatterPoint& p : points)
    if (std::find(series.begin(), series.end(), p.series) == series.end())
      series.push_back(p.series);
  std::vector<std::string> plots;
  for (size_t s = 0; s < series.size(); ++s) {
    gp << "$series" << s << " << EOD\n";
    for (const ScatterPoint& p : points)
      if (p.series == series[s] && std::isfinite(p.x) && std::isfinite(p.y))
        gp << number(p.x) << " " << number(p.y) << "\n";
    gp << "EOD\n";
    plots.push_back(concat("$series", s, " using 1:2 with points pointtype 7 pointsize 1.2 title ",
                           quoted(series[s])));
  }
  gp << "$frontier << EOD\n";
  for (size_t i : frontier) gp << number(points[i].x) << " " << number(points[i].y) << "\n";
  gp << "EOD\n";
  if (!frontier.empty())
    plots.push_back(
        "$frontier using 1:2 with steps linewidth 2 dashtype 2 linecolor rgb 'black' "
        "title \"Pareto frontier\"");
  gp << "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n";
  if (plots.empty() || frontier.empty()) {
    gp << "set label 1 \"no run with a score\" at graph 0.5,0.5 center\nplot [0:1] [0:1] NaN "
          "notitle\n";
  } else {
    gp << "plot ";
    for (size_t i = 0; i < plots.size(); ++i) gp << (i ? ", \\\n     " : "") << plots[i];
    gp << "\n";
  }
  run_gnuplot(gp.str(), out, script);
}

void plot_panels(const std::vector<PlotPanel>& panels,
                 const std::string& title,
                 const std::string& out,
                 const std::string& script) {
  LATTICE_CHECK(!panels.empty(), "[plot] no panels to draw for ", out);
  std::ostringstream gp;
  gp << terminal_for(out) << "\nset output " << quoted(out) << "\n"
     << "set termoption noenhanced\nset grid\nset key top left\n"
     << "set offsets graph 0.05, graph 0.05, graph 0.1, graph 0.05\n";
  if (panels.size() > 1)
    gp << "set multiplot layout 1," << panels.size()
       << (title.empty() ? "" : concat(" title ", quoted(title))) << "\n";
  else if (!title.empty())
    gp << "set title " << quoted(title) << "\n";
  int block = 0;
  for (const PlotPanel& panel : panels) {
    if (panels.size() > 1) gp << "set title " << quoted(panel.title) << "\n";
    gp << (panel.log_x ? "set logscale x\n" : "unset logscale x\n")
       << (panel.log_y ? "set logscale y\n" : "unset logscale y\n") << "set xlabel "
       << quoted(panel.x_label) << "\nset ylabel " << quoted(panel.y_label) << "\n";
    std::vector<std::string> plots;
    for (const PlotSeries& series : panel.series) {
      const std::string name = concat("$xy", block++);
      gp << name << " << EOD\n";
      int drawn = 0;
      for (size_t i = 0; i < series.x.size() && i < series.y.size(); ++i) {
        const double x = series.x[i], y = series.y[i];
        if (!std::isfinite(x) || !std::isfinite(y) || (panel.log_x && x <= 0) ||
            (panel.log_y && y <= 0))
          continue;
        gp << number(x) << " " << number(y) << "\n";
        ++drawn;
      }
      gp << "EOD\n";
      if (drawn == 0) continue;  // gnuplot fails on an empty datablock
      const std::string style = series.style == "lines"    ? "lines linewidth 2"
                                : series.style == "dashed" ? "lines linewidth 2 dashtype 2"
                                                           : "points pointtype 7 pointsize 1";
      plots.push_back(concat(name, " using 1:2 with ", style, " title ", quoted(series.title)));
    }
    if (plots.empty()) {
      gp << "set label 1 \"no finite values\" at graph 0.5,0.5 center\nplot [1:2] [1:2] NaN "
            "notitle\nunset label 1\n";
      continue;
    }
    gp << "plot ";
    for (size_t i = 0; i < plots.size(); ++i) gp << (i ? ", \\\n     " : "") << plots[i];
    gp << "\n";
  }
  if (panels.size() > 1) gp << "unset multiplot\n";
  run_gnuplot(gp.str(), out, script);
}

std::string summaries_markdown(const std::vector<PlotRun>& runs) {
  const auto text = [](const nlohmann::json& j, const char* key, int digits) -> std::string {
    if (!j.contains(key) || j[key].is_null()) return j.contains(key) ? "NaN" : "-";
    if (j[key].is_string()) return j[key].get<std::string>();
    if (digits < 0) return std::to_string(j[key].get<int64_t>());
    char out[32];
    std::snprintf(out, sizeof out, "%.*f", digits, j[key].get<double>());
    return out;
  };
  std::string md =
      "| run | trainer | stack | status | steps | train loss | val loss | val accuracy | seconds "
      "|\n"
      "|---|---|---|---|--:|--:|--:|--:|--:|\n";
  for (const PlotRun& run : runs) {
    nlohmann::json s = nlohmann::json::object();
    const fs::path path = fs::path(run.dir) / "summary.json";
    std::ifstream in(path);
    const bool found = in.good();
    if (found) {
      try {
        s = nlohmann::json::parse(in);
      } catch (const std::exception&) {
        throw Error(concat("[plot] ", path.string(), ": not a JSON summary"));
      }
    }
    std::string accuracy = "-";
    if (s.contains("val_accuracy") && s["val_accuracy"].is_number()) {
      char out[32];
      std::snprintf(out, sizeof out, "%.2f%%", 100.0 * s["val_accuracy"].get<double>());
      accuracy = out;
    }
    const std::string status = found ? text(s, "status", 0) : "no summary";
    md += concat("| ", run.label, " | ", text(s, "trainer", 0), " | `", text(s, "stack", 0), "` | ",
                 status, " | ", text(s, "steps", -1), " | ", text(s, "train_loss", 4), " | ",
                 text(s, "val_loss", 4), " | ", accuracy, " | ", text(s, "seconds", 1), " |\n");
  }
  return md;
}

}  // namespace lattice::tools
