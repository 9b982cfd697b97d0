// The table-driven op test (ops/op_table.h): for every entry, float32 values against an
// independent double implementation here (or the float64 run of the same op), the gradient
// against finite differences in float64, the same bits from strided and from pre-expanded
// inputs, and CPU parity on every other device. A function declared in an ops/ header or
// nn/functional.h without an entry fails the first test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numbers>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "gradcheck_support.h"
#include "kernels/device_memory.h"
#include "nn/functional.h"
#include "ops/attention_ops.h"
#include "ops/norm_ops.h"
#include "ops/op_table.h"
#include "ops/ops.h"
#include "ops/rope_ops.h"
#include "ops/spatial_ops.h"
#include "tensor/quantizer.h"
#include "tensor/random.h"

using namespace lattice;

namespace {

using OpCall = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  const char* name;
  const char* function;
  const char* backward;
  OpReference reference;
  unsigned checks;
  std::vector<OpTestInput> inputs;
  OpCall call;
  const char* note;
};

#define LATTICE_OP_CASE(case_name, function, backward, reference, checks, inputs, call, note) \
  OpCase{#case_name,                                                                          \
         #function,                                                                           \
         backward,                                                                            \
         OpReference::reference,                                                              \
         checks,                                                                              \
         {LATTICE_UNPAREN inputs},                                                            \
         [](const std::vector<Tensor>& x) -> Tensor { return LATTICE_UNPAREN call; },         \
         note},

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = {LATTICE_OP_TABLE(LATTICE_OP_CASE)};
  return cases;
}

/// Functions declared in the scanned headers that are not ops: each with why.
const std::set<std::string> kNotOps = {
    // The precision stack's output rounding that ops apply to their results (a quantize with
    // the stack's Λa, covered by the quantize entry), not an op a model calls.
    "on_activation_lattice",
    // The lattice label an op puts on its output when its values are its input's.
    "on_lattice_of",
};

// ---------------------------------------------------------------------------------------------
// Inputs

/// The entry's float32 inputs, seeded by the case's position in the table.
std::vector<Tensor> make_inputs(const OpCase& op, size_t position) {
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < op.inputs.size(); ++i) {
    const OpTestInput& spec = op.inputs[i];
    const Shape shape(spec.shape.begin(), spec.shape.end());
    const RandomStream random{.seed = 1000 + 16 * position + i};
    switch (spec.domain) {
      case OpDomain::any:
        inputs.push_back(uniform(shape, -1.0, 1.0, random));
        break;
      case OpDomain::positive:
        inputs.push_back(uniform(shape, 0.5, 2.0, random));
        break;
      case OpDomain::away_from_zero: {
        std::vector<float> v = uniform(shape, -1.0, 1.0, random).to_vector<float>();
        for (float& value : v) value = std::copysign(0.25f + 0.75f * std::fabs(value), value);
        inputs.push_back(from_vector<float>(v, shape));
        break;
      }
    }
  }
  return inputs;
}

/// The same values through a view whose last stride is 2.
Tensor strided_view(const Tensor& x) {
  NoGradGuard no_grad;
  return stack({x, zeros_like(x)}, -1).select(-1, 0);
}

Shape broadcast_shape(const std::vector<Tensor>& inputs) {
  int rank = 0;
  for (const Tensor& t : inputs) rank = std::max(rank, t.rank());
  Shape shape(std::vector<int64_t>(size_t(rank), 1));
  for (const Tensor& t : inputs)
    for (int i = 0; i < t.rank(); ++i) {
      int64_t& size = shape[size_t(rank - t.rank() + i)];
      size = std::max(size, t.shape(i));
    }
  return shape;
}

Tensor on_device(const Tensor& t, Device device) {
  Tensor out = empty(t.shape(), t.dtype(), device);
  out.copy_(t);
  return out;
}

std::vector<double> values_of(const Tensor& t) {
  return t.to(DType::float64).contiguous().to_vector<double>();
}

/// Same shape and the same bits (float32 and boolean values widen to double exactly).
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const std::vector<double> x = values_of(a), y = values_of(b);
  return x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0;
}

// ---------------------------------------------------------------------------------------------
// Naive double references: short loops, written without the ops they check.

struct Ref {
  std::vector<int64_t> shape;
  std::vector<double> values;
};

Ref ref_of(const Tensor& t) {
  return {std::vector<int64_t>(t.shape().begin(), t.shape().end()), values_of(t)};
}

int64_t count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Ref map1(const Ref& a, const std::function<double(double)>& f) {
  Ref out = a;
  for (double& v : out.values) v = f(v);
  return out;
}

/// f(a, b) with NumPy broadcasting.
Ref map2(const Ref& a, const Ref& b, const std::function<double(double, double)>& f) {
  const size_t rank = std::max(a.shape.size(), b.shape.size());
  const auto padded = [&](const std::vector<int64_t>& s) {
    std::vector<int64_t> p(rank - s.size(), 1);
    p.insert(p.end(), s.begin(), s.end());
    return p;
  };
  const std::vector<int64_t> sa = padded(a.shape), sb = padded(b.shape);
  Ref out;
  for (size_t i = 0; i < rank; ++i) out.shape.push_back(std::max(sa[i], sb[i]));
  for (int64_t flat = 0; flat < count(out.shape); ++flat) {
    int64_t rest = flat, ia = 0, ib = 0, stride_a = 1, stride_b = 1;
    for (size_t d = rank; d-- > 0;) {
      const int64_t index = rest % out.shape[d];
      rest /= out.shape[d];
      ia += (sa[d] == 1 ? 0 : index) * stride_a;
      ib += (sb[d] == 1 ? 0 : index) * stride_b;
      stride_a *= sa[d];
      stride_b *= sb[d];
    }
    out.values.push_back(f(a.values[size_t(ia)], b.values[size_t(ib)]));
  }
  return out;
}

/// Each line along `axis` replaced by f(line) (a line of the same length, or of length 1).
Ref along(const Ref& a,
          size_t axis,
          bool keep_length,
          const std::function<std::vector<double>(const std::vector<double>&)>& f) {
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < axis; ++d) outer *= a.shape[d];
  for (size_t d = axis + 1; d < a.shape.size(); ++d) inner *= a.shape[d];
  const int64_t n = a.shape[axis], m = keep_length ? n : 1;
  Ref out{a.shape, std::vector<double>(size_t(outer * m * inner))};
  out.shape[axis] = m;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      std::vector<double> line;
      for (int64_t k = 0; k < n; ++k) line.push_back(a.values[size_t((o * n + k) * inner + i)]);
      const std::vector<double> result = f(line);
      for (int64_t k = 0; k < m; ++k)
        out.values[size_t((o * m + k) * inner + i)] = result[size_t(k)];
    }
  return out;
}

/// A reduction of each line along `axis` to one value; the axis is kept as size 1 or dropped.
Ref reduce(const Ref& a,
           size_t axis,
           bool keepdim,
           const std::function<double(const std::vector<double>&)>& f) {
  Ref out = along(a, axis, false,
                  [&](const std::vector<double>& line) { return std::vector<double>{f(line)}; });
  if (!keepdim) out.shape.erase(out.shape.begin() + long(axis));
  return out;
}

double line_sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}
double line_max(const std::vector<double>& v) {
  return *std::max_element(v.begin(), v.end());
}
double line_logsumexp(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += std::exp(x);
  return std::log(s);
}

/// Rows of a 2-D Ref picked by `rows`.
Ref pick_rows(const Ref& a, const std::vector<int64_t>& rows) {
  Ref out{{int64_t(rows.size()), a.shape[1]}, {}};
  for (int64_t r : rows)
    for (int64_t j = 0; j < a.shape[1]; ++j)
      out.values.push_back(a.values[size_t(r * a.shape[1] + j)]);
  return out;
}

/// Joins two 2-D Refs along axis 1.
Ref join_columns(const Ref& a, const Ref& b) {
  Ref out{{a.shape[0], a.shape[1] + b.shape[1]}, {}};
  for (int64_t i = 0; i < a.shape[0]; ++i) {
    for (int64_t j = 0; j < a.shape[1]; ++j)
      out.values.push_back(a.values[size_t(i * a.shape[1] + j)]);
    for (int64_t j = 0; j < b.shape[1]; ++j)
      out.values.push_back(b.values[size_t(i * b.shape[1] + j)]);
  }
  return out;
}

double naive_gelu(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
double naive_gelu_tanh(double x) {
  const double c = std::sqrt(2.0 / std::numbers::pi);
  return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
}
double naive_sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

using Naive = std::function<Ref(const std::vector<Ref>&)>;

/// The naive reference of every entry whose reference is `naive`, by case name.
const std::map<std::string, Naive>& naive_references() {
  using V = std::vector<Ref>;
  const auto unary = [](double (*f)(double)) { return [f](const V& x) { return map1(x[0], f); }; };
  const auto binary = [](double (*f)(double, double)) {
    return [f](const V& x) { return map2(x[0], x[1], f); };
  };
  static const std::map<std::string, Naive> references = {
      {"add", binary([](double a, double b) { return a + b; })},
      {"sub", binary([](double a, double b) { return a - b; })},
      {"mul", binary([](double a, double b) { return a * b; })},
      {"div", binary([](double a, double b) { return a / b; })},
      {"maximum", binary([](double a, double b) { return std::max(a, b); })},
      {"minimum", binary([](double a, double b) { return std::min(a, b); })},
      {"greater", binary([](double a, double b) { return double(a > b); })},
      {"less", binary([](double a, double b) { return double(a < b); })},
      {"equal", binary([](double a, double b) { return double(a == std::max(a, b)); })},
      {"where", binary([](double a, double b) { return a > b ? a : b; })},
      {"scale", unary([](double a) { return a * -2.5; })},
      {"neg", unary([](double a) { return -a; })},
      {"exp", unary([](double a) { return std::exp(a); })},
      {"log", unary([](double a) { return std::log(a); })},
      {"tanh", unary([](double a) { return std::tanh(a); })},
      {"relu", unary([](double a) { return a < 0 ? 0.0 : a; })},
      {"sqrt", unary([](double a) { return std::sqrt(a); })},
      {"rsqrt", unary([](double a) { return 1.0 / std::sqrt(a); })},
      {"abs", unary([](double a) { return std::fabs(a); })},
      {"sign", unary([](double a) { return double((a > 0) - (a < 0)); })},
      {"sigmoid", unary(naive_sigmoid)},
      {"silu", unary([](double a) { return a * naive_sigmoid(a); })},
      {"swiglu", binary([](double a, double b) { return a * naive_sigmoid(a) * b; })},
      {"sin", unary([](double a) { return std::sin(a); })},
      {"cos", unary([](double a) { return std::cos(a); })},
      {"pow", unary([](double a) { return std::pow(a, 1.5); })},
      {"gelu", unary(naive_gelu)},
      {"gelu_tanh", unary(naive_gelu_tanh)},
      {"clamp", unary([](double a) { return std::clamp(a, -0.5, 0.5); })},
      {"sum", [](const V& x) { return reduce(x[0], 1, true, line_sum); }},
      {"sum_all",
       [](const V& x) {
         return Ref{{}, {line_sum(x[0].values)}};
       }},
      {"sum_to",
       [](const V& x) {
         // (2, 3, 4) -> (3, 1): the leading axis and the last one
         return reduce(reduce(x[0], 0, false, line_sum), 1, true, line_sum);
       }},
      {"mean",
       [](const V& x) {
         return reduce(x[0], 0, false,
                       [](const auto& v) { return line_sum(v) / double(v.size()); });
       }},
      {"max", [](const V& x) { return reduce(x[0], 1, false, line_max); }},
      {"var",
       [](const V& x) {
         return reduce(x[0], 1, true, [](const std::vector<double>& v) {
           const double m = line_sum(v) / double(v.size());
           double s = 0;
           for (double a : v) s += (a - m) * (a - m);
           return s / double(v.size() - 1);
         });
       }},
      {"logsumexp", [](const V& x) { return reduce(x[0], 1, false, line_logsumexp); }},
      {"log_softmax",
       [](const V& x) {
         return along(x[0], 1, true, [](const std::vector<double>& v) {
           std::vector<double> out;
           for (double a : v) out.push_back(a - line_logsumexp(v));
           return out;
         });
       }},
      {"softmax",
       [](const V& x) {
         return along(x[0], 0, true, [](const std::vector<double>& v) {
           std::vector<double> out;
           for (double a : v) out.push_back(std::exp(a) / std::exp(line_logsumexp(v)));
           return out;
         });
       }},
      {"causal_softmax",
       [](const V& x) {
         // (2, 4, 4) scores: row t of each 4 x 4 block over keys 0..t, 0 after.
         Ref out{x[0].shape, std::vector<double>(x[0].values.size(), 0.0)};
         for (size_t row = 0; row < 8; ++row) {
           const size_t t = row % 4;
           const std::vector<double> seen(x[0].values.begin() + long(row * 4),
                                          x[0].values.begin() + long(row * 4 + t + 1));
           for (size_t s = 0; s <= t; ++s)
             out.values[row * 4 + s] = std::exp(seen[s] - line_logsumexp(seen));
         }
         return out;
       }},
      {"cross_entropy",
       [](const V& x) {
         // targets {4, -100, 1}: rows 0 and 2 count
         const Ref& l = x[0];
         const auto row = [&](int64_t r) {
           return std::vector<double>(l.values.begin() + r * 5, l.values.begin() + r * 5 + 5);
         };
         const double loss =
             (line_logsumexp(row(0)) - row(0)[4]) + (line_logsumexp(row(2)) - row(2)[1]);
         return Ref{{}, {loss / 2.0}};
       }},
      {"mse",
       [](const V& x) {
         const Ref squares = map2(x[0], x[1], [](double p, double t) { return (p - t) * (p - t); });
         return Ref{{}, {line_sum(squares.values) / double(squares.values.size())}};
       }},
      {"index_select",
       [](const V& x) {
         return pick_rows(x[0], {3, 0, 3});
       }},
      {"embedding",
       [](const V& x) {
         Ref out = pick_rows(x[0], {1, 4, 1, 0});
         out.shape = {2, 2, 3};
         return out;
       }},
      {"gather",
       [](const V& x) {
         const int64_t index[2][3] = {{3, 0, 3}, {1, 1, 2}};
         Ref out{{2, 3}, {}};
         for (int64_t i = 0; i < 2; ++i)
           for (int64_t j = 0; j < 3; ++j)
             out.values.push_back(x[0].values[size_t(i * 4 + index[i][j])]);
         return out;
       }},
      {"cat", [](const V& x) { return join_columns(x[0], x[1]); }},
      {"stack",
       [](const V& x) {
         Ref out{{2, 2, 3}, {}};  // out[i][k][j] = x[k][i][j]
         for (int64_t i = 0; i < 2; ++i)
           for (const Ref& t : x)
             for (int64_t j = 0; j < 3; ++j) out.values.push_back(t.values[size_t(i * 3 + j)]);
         return out;
       }},
      {"split",
       [](const V& x) {
         Ref out{{2, 3}, {}};  // columns 2..4 of (2, 5)
         for (int64_t i = 0; i < 2; ++i)
           for (int64_t j = 2; j < 5; ++j) out.values.push_back(x[0].values[size_t(i * 5 + j)]);
         return out;
       }},
      {"matmul",
       [](const V& x) {
         // (2, 3, 4) @ (4, 5)
         Ref out{{2, 3, 5}, {}};
         for (int64_t b = 0; b < 2; ++b)
           for (int64_t i = 0; i < 3; ++i)
             for (int64_t j = 0; j < 5; ++j) {
               double s = 0;
               for (int64_t k = 0; k < 4; ++k)
                 s += x[0].values[size_t((b * 3 + i) * 4 + k)] * x[1].values[size_t(k * 5 + j)];
               out.values.push_back(s);
             }
         return out;
       }},
  };
  return references;
}

/// CHECKs `actual` against `expected` elementwise within rel * |expected| + abs.
void check_close(const Tensor& actual, const Ref& expected, double rel, double abs) {
  const std::vector<int64_t> shape(actual.shape().begin(), actual.shape().end());
  REQUIRE(shape == expected.shape);
  const std::vector<double> values = values_of(actual);
  double worst = 0.0;
  size_t worst_at = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const double excess =
        std::fabs(values[i] - expected.values[i]) - (rel * std::fabs(expected.values[i]) + abs);
    if (i == 0 || excess > worst) {
      worst = excess;
      worst_at = i;
    }
  }
  if (values.empty()) return;
  INFO("element ", worst_at, ": ", values[worst_at], ", expected ", expected.values[worst_at]);
  CHECK(worst <= 0.0);
}

std::vector<Tensor> to_float64(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out;
  for (const Tensor& t : inputs) out.push_back(t.to(DType::float64));
  return out;
}

/// Names of free functions returning Tensor (or std::vector<Tensor>) declared in `header`, which
/// must be ops (members, indented, are not); `text` collects the header's lines.
std::set<std::string> declared_functions(const std::filesystem::path& header, std::string& text) {
  std::ifstream in(header);
  static const std::regex declaration(
      R"(^(?:inline\s+)?(?:Tensor|std::vector<Tensor>)\s+(\w+)\s*\()");
  std::set<std::string> names;
  std::smatch match;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_search(line, match, declaration)) names.insert(match[1]);
    text += line + "\n";
  }
  return names;
}

}  // namespace

TEST_CASE("every op declared in ops/*.h and nn/functional.h has an entry in the op table") {
  const std::filesystem::path source = LATTICE_SOURCE_DIR;
  std::vector<std::filesystem::path> headers = {source / "nn" / "functional.h"};
  for (const auto& file : std::filesystem::directory_iterator(source / "ops"))
    if (file.path().extension() == ".h") headers.push_back(file.path());
  std::set<std::string> declared;
  std::string text;
  for (const auto& header : headers) {
    const std::set<std::string> names = declared_functions(header, text);
    declared.insert(names.begin(), names.end());
  }
  REQUIRE(declared.count("matmul") == 1);  // the scan reads the headers at all
  std::set<std::string> in_table, case_names;
  for (const OpCase& op : op_cases()) {
    in_table.insert(op.function);
    INFO(std::string(op.name));
    CHECK(case_names.insert(op.name).second);  // case names are unique
  }
  for (const std::string& name : declared) {
    INFO(name, " is declared in an ops/ header but has no entry in ops/op_table.h");
    CHECK((in_table.count(name) + kNotOps.count(name)) == 1);
  }
  // Entries name declared functions (some return a struct, e.g. attention's result).
  for (const std::string& name : in_table) {
    INFO(name, " has an op table entry but is declared in no scanned header");
    CHECK(std::regex_search(text, std::regex("\\b" + name + "\\(")));
  }
}

TEST_CASE("every op's float32 values match a float64 reference within 1e-5 relative") {
  const auto& naive = naive_references();
  std::set<std::string> naive_cases;
  for (size_t i = 0; i < op_cases().size(); ++i) {
    const OpCase& op = op_cases()[i];
    INFO(std::string(op.name), " (", std::string(op.note), ")");
    const std::vector<Tensor> inputs = make_inputs(op, i);
    const std::vector<Tensor> inputs64 = to_float64(inputs);
    switch (op.reference) {
      case OpReference::naive: {
        naive_cases.insert(op.name);
        const auto reference = naive.find(op.name);
        REQUIRE(reference != naive.end());
        std::vector<Ref> refs;
        for (const Tensor& t : inputs) refs.push_back(ref_of(t));
        const Ref expected = reference->second(refs);
        check_close(op.call(inputs), expected, 1e-5, 1e-6);
        check_close(op.call(inputs64), expected, 1e-10, 1e-12);
        break;
      }
      case OpReference::float64_run:
        check_close(op.call(inputs), ref_of(op.call(inputs64)), 1e-5, 1e-6);
        break;
      case OpReference::none:
        CHECK(std::string(op.note).find("float32 only") != std::string::npos);
        break;
    }
  }
  for (const auto& entry : naive) {
    const std::string& name = entry.first;  // not a structured binding: INFO captures it
    INFO(name, " has a naive reference but no naive entry");
    CHECK(naive_cases.count(name) == 1);
  }
}

TEST_CASE("every differentiable op's gradient matches central differences in float64") {
  for (size_t i = 0; i < op_cases().size(); ++i) {
    const OpCase& op = op_cases()[i];
    if (!(op.checks & kGradientCheck)) {
      INFO(std::string(op.name), ": an entry without a gradient check says why");
      CHECK(std::string(op.note).find("no gradient check") != std::string::npos);
      continue;
    }
    INFO(std::string(op.name), " (backward: ", std::string(op.backward), ")");
    test::check_gradients(op.call, make_inputs(op, i));
  }
}

TEST_CASE("every op gives the same bits from strided inputs as from contiguous ones") {
  for (size_t i = 0; i < op_cases().size(); ++i) {
    const OpCase& op = op_cases()[i];
    if (!(op.checks & kStridedCheck)) continue;
    INFO(std::string(op.name));
    const std::vector<Tensor> inputs = make_inputs(op, i);
    std::vector<Tensor> strided;
    for (const Tensor& t : inputs) {
      strided.push_back(strided_view(t));
      CHECK((t.numel() <= 1 || !strided.back().is_contiguous()));
    }
    CHECK(same_bits(op.call(strided), op.call(inputs)));
  }
}

TEST_CASE("every broadcasting op gives the same bits from inputs expanded beforehand") {
  int broadcasting = 0;
  for (size_t i = 0; i < op_cases().size(); ++i) {
    const OpCase& op = op_cases()[i];
    if (!(op.checks & kBroadcastCheck)) continue;
    INFO(std::string(op.name));
    const std::vector<Tensor> inputs = make_inputs(op, i);
    const Shape shape = broadcast_shape(inputs);
    std::vector<Tensor> expanded, materialized;
    bool any_broadcast = false;
    for (const Tensor& t : inputs) {
      any_broadcast = any_broadcast || t.shape() != shape;
      expanded.push_back(t.expand(shape));
      materialized.push_back(t.expand(shape).contiguous());
    }
    CHECK(any_broadcast);  // the entry's shapes do broadcast
    const Tensor result = op.call(inputs);
    CHECK(same_bits(op.call(expanded), result));
    CHECK(same_bits(op.call(materialized), result));
    ++broadcasting;
  }
  CHECK(broadcasting >= 10);
}

/// Each entry's values and gradients on `device`, against the CPU's: counted as bit-identical,
/// or else required within 1e-5 relative (+1e-6 absolute). Transcendentals (CUDA's and glibc's
/// differ by an ulp), fused multiply-adds and reduction order are what may differ; NUMERICS.md
/// lists which ops are exact across devices.
void check_parity(Device device) {
  std::vector<std::string> bitwise, close;
  for (size_t i = 0; i < op_cases().size(); ++i) {
    const OpCase& op = op_cases()[i];
    INFO(std::string(op.name), " on ", device);
    const std::vector<Tensor> inputs = make_inputs(op, i);
    std::vector<Tensor> moved;
    for (const Tensor& t : inputs) moved.push_back(on_device(t, device));
    const bool differentiable = (op.checks & kGradientCheck) != 0;
    for (const Tensor& t : differentiable ? inputs : std::vector<Tensor>{}) set_requires_grad(t);
    for (const Tensor& t : differentiable ? moved : std::vector<Tensor>{}) set_requires_grad(t);
    // Ops that draw from the default stream (stochastic rounding) draw the same words.
    manual_seed(i);
    const Tensor expected = op.call(inputs);
    manual_seed(i);
    const Tensor actual = op.call(moved);
    REQUIRE(actual.device() == device);
    bool identical = same_bits(on_device(actual, Device::cpu), expected);
    if (!identical) check_close(on_device(actual, Device::cpu), ref_of(expected), 1e-5, 1e-6);
    if (differentiable) {
      // One weighted sum of the output, the same weights on both devices.
      const Tensor weights = uniform(expected.shape(), 0.5, 1.5, RandomStream{.seed = 7});
      backward(sum(mul(expected, weights)));
      backward(sum(mul(actual, on_device(weights, device))));
      for (size_t k = 0; k < inputs.size(); ++k) {
        INFO("gradient of input ", k);
        const Tensor host = grad(inputs[k]), other = grad(moved[k]);
        REQUIRE(host.defined() == other.defined());
        if (!host.defined()) continue;
        REQUIRE(other.device() == device);
        const Tensor back = on_device(other, Device::cpu);
        if (same_bits(back, host)) continue;
        identical = false;
        check_close(back, ref_of(host), 1e-5, 1e-6);
      }
    }
    (identical ? bitwise : close).push_back(op.name);
  }
  std::string listed;
  for (const std::string& name : close) listed += " " + name;
  MESSAGE(device, ": ", bitwise.size(), " entries bit-identical to the CPU, ", close.size(),
          " within 1e-5:", listed);
}

TEST_CASE("every op's values and gradients agree with the CPU's on every other device") {
  if (!cuda_available()) {
    MESSAGE("no CUDA device: the op table runs on the CPU only");
    return;
  }
  check_parity(Device::cuda);
}
