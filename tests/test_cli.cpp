// The `lattice` tool, run as a process: the formats table, cast, quantize in text and binary
// mode against hand-computed and bit-arithmetic results, and one-line errors with status 2.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/philox.h"
#include "numerics_reference.h"
#include "process_support.h"

namespace {

using ToolResult = lattice::test::ProgramResult;
using reference::bits_of;

/// Runs `lattice <args>` with `input` on stdin.
ToolResult run_tool(const std::string& args, const std::string& input = "") {
  return lattice::test::run_program(LATTICE_TOOL, args, input);
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(' ');
  return first == std::string::npos ? "" : s.substr(first, s.find_last_not_of(' ') - first + 1);
}

/// Cells of a Markdown table row "| a | b |".
std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::istringstream in(row.substr(1));
  for (std::string cell; std::getline(in, cell, '|');) out.push_back(trim(cell));
  return out;
}

/// The cell of `column` in the row of `name`, from the table whose header starts with `first`.
std::string table_cell(const std::string& text,
                       const std::string& first,
                       const std::string& name,
                       const std::string& column) {
  std::vector<std::string> header;
  for (const std::string& line : split_lines(text)) {
    if (line.rfind("| " + first + " ", 0) == 0) header = cells(line);
    if (header.empty() || line.empty() || line[0] != '|') continue;
    const std::vector<std::string> row = cells(line);
    if (row.empty() || row[0] != name) continue;
    for (size_t c = 0; c < header.size() && c < row.size(); ++c)
      if (header[c] == column) return row[c];
  }
  return "<missing>";
}

/// "key: value" lines of `lattice cast`.
std::map<std::string, std::string> fields(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const std::string& line : split_lines(text)) {
    const size_t colon = line.find(':');
    if (colon != std::string::npos) out[line.substr(0, colon)] = trim(line.substr(colon + 1));
  }
  return out;
}

std::string text_of(const std::vector<float>& values) {
  std::string text;
  char line[64];
  for (float v : values) {
    std::snprintf(line, sizeof line, "%.9g\n", double(v));
    text += line;
  }
  return text;
}

std::vector<float> parse_text(const std::string& text) {
  std::vector<float> values;
  for (const std::string& line : split_lines(text))
    values.push_back(std::strtof(line.c_str(), nullptr));
  return values;
}

float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

std::string bytes_of(const std::vector<float>& values) {
  std::string bytes;
  for (float v : values)
    for (int k = 0; k < 4; ++k) bytes += char((bits_of(v) >> (8 * k)) & 0xFFu);
  return bytes;
}

std::vector<uint32_t> words_of(const std::string& bytes) {
  std::vector<uint32_t> words(bytes.size() / 4);
  for (size_t i = 0; i < words.size(); ++i)
    for (int k = 0; k < 4; ++k) words[i] |= uint32_t(uint8_t(bytes[4 * i + size_t(k)])) << (8 * k);
  return words;
}

/// A usage error: status 2 and exactly one line "lattice: ..." on stderr, nothing on stdout.
void check_one_line_error(const ToolResult& r) {
  CHECK(r.status == 2);
  CHECK(r.out.empty());
  CHECK(r.err.rfind("lattice: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.back() == '\n');
}

}  // namespace

TEST_CASE("lattice formats lists every named format and quantizer with exact ranges") {
  const ToolResult r = run_tool("formats");
  REQUIRE(r.status == 0);
  for (const char* name : {"fp32", "tf32", "bf16", "fp16", "e5m2", "e4m3", "e3m2", "e2m3", "e2m1",
                           "int8", "int4", "ue8m0", "ue4m3", "ue5m3", "e8m3"})
    CHECK_MESSAGE(table_cell(r.out, "format", name, "bits") != "<missing>", name);
  CHECK(table_cell(r.out, "format", "e4m3", "max finite") == "448");
  CHECK(table_cell(r.out, "format", "ue5m3", "max finite") == "61440");
  CHECK(table_cell(r.out, "format", "e5m2", "max finite") == "57344");
  CHECK(table_cell(r.out, "format", "e2m1", "finite values") == "15");
  CHECK(table_cell(r.out, "format", "e2m1", "min subnormal") == "0.5");
  CHECK(table_cell(r.out, "format", "fp32", "min subnormal") == "1.40129846e-45 (2^-149)");
  // e8m3's max, 1.875 * 2^128, lies beyond fp32 and is printed from the double.
  CHECK(table_cell(r.out, "format", "e8m3", "max finite") == "6.38029438e+38 (0x1.ep+128)");
  CHECK(table_cell(r.out, "quantizer", "mxfp4", "scale") == "ue8m0");
  CHECK(table_cell(r.out, "quantizer", "nvfp4", "block") == "16");
  CHECK(table_cell(r.out, "quantizer", "nvfp4", "scale") == "ue4m3");
  CHECK(table_cell(r.out, "quantizer", "mxfp8", "element") == "e4m3");
}

TEST_CASE("cast 464 to e4m3 rounds the tie to even: 448, code 0x7e, next up NaN") {
  const ToolResult r = run_tool("cast 464 --to e4m3");
  REQUIRE(r.status == 0);
  auto f = fields(r.out);
  CHECK(f["input"] == "464 (0x1.dp+8)");
  CHECK(f["result"] == "448 (0x1.cp+8)");
  CHECK(f["bits"] == "0x7e = 0 1111 110 (sign exponent mantissa)");
  CHECK(f["ulp"] == "32");
  CHECK(f["next_down"] == "416");
  CHECK(f["next_up"] == "nan");
}

TEST_CASE("cast to e2m1 rounds ties to even (2.5 -> 2, 3.5 -> 4) and away with rna (2.5 -> 3)") {
  CHECK(fields(run_tool("cast 2.5 --to e2m1").out)["result"] == "2 (0x1p+1)");
  CHECK(fields(run_tool("cast 2.5 --to e2m1").out)["bits"] ==
        "0x4 = 0 10 0 (sign exponent mantissa)");
  CHECK(fields(run_tool("cast 3.5 --to fp4").out)["result"] == "4 (0x1p+2)");
  CHECK(fields(run_tool("cast 2.5 --to e2m1 --round rna").out)["result"] == "3 (0x1.8p+1)");
}

TEST_CASE("cast reads hex-floats and negative values that look like options (-inf, -.5)") {
  CHECK(fields(run_tool("cast 0x1.8p-3 --to e4m3").out)["result"] == "0.1875 (0x1.8p-3)");
  CHECK(fields(run_tool("cast -.75 --to e2m1").out)["result"] == "-1 (-0x1p+0)");
  auto f = fields(run_tool("cast -inf --to e5m2").out);
  CHECK(f["result"] == "-inf (-inf)");
  CHECK(f["bits"] == "0xfc = 1 11111 00 (sign exponent mantissa)");
  CHECK(fields(run_tool("cast 1000 --to e4m3 --overflow saturate").out)["result"] ==
        "448 (0x1.cp+8)");
}

TEST_CASE(
    "cast --round sr rounds 0.1 to bf16 up exactly when RandomStream{seed}.word(0) is below "
    "the dropped bits") {
  // 0.1f = 0x3dcccccd: bf16 keeps 0x3dcc and drops 0xcccd, so up iff word < 0xcccd0000.
  int ups = 0;
  for (uint64_t seed = 0; seed < 16; ++seed) {
    const bool up = lattice::RandomStream{seed}.word(0) < 0xcccd0000u;
    ups += up;
    const float expected = from_bits(up ? 0x3dcd0000u : 0x3dcc0000u);
    auto f = fields(run_tool("cast 0.1 --to bf16 --round sr --seed " + std::to_string(seed)).out);
    char text[64];
    std::snprintf(text, sizeof text, "%.9g (%a)", double(expected), double(expected));
    CHECK_MESSAGE(f["result"] == text, "seed ", seed);
  }
  CHECK(ups > 0);  // both directions occur among the seeds, or the test checks nothing
  CHECK(ups < 16);
}

TEST_CASE("quantize --format mxfp4 matches the hand-computed block: X = 2^(1-2), RNE on e2m1") {
  // amax 3 -> X = 2^(floor(log2 3) - emax(e2m1)) = 2^(1 - 2) = 0.5. x/X onto
  // {0, 0.5, 1, 1.5, 2, 3, 4, 6}: 2.6 -> 3, -6 -> -6, 0.4 -> 0.5, 4.4 -> 4, 1.48 -> 1.5,
  // 0.2 -> 0, 5 -> 4 (tie to even), then times X.
  const ToolResult r =
      run_tool("quantize --format mxfp4", "1.3\n-3\n 0.2 \n\n2.2\n0.74\n0.1\n2.5\n");
  REQUIRE(r.status == 0);
  CHECK(r.out == "1.5\n-3\n0.25\n2\n0.75\n0\n2\n");
}

TEST_CASE("quantize blocks of --block run along --axis of --shape") {
  // x = [[0.5, 3, 1.25], [6, 0.75, 2.5]], e2m1 elements with MX scales X = 2^(e(amax) - 2).
  const std::string x = "0.5\n3\n1.25\n6\n0.75\n2.5\n";
  // Axis 0, blocks are the columns: (0.5, 6) X = 1; (3, 0.75) X = 0.5: 6 -> 6, 1.5 -> 1.5;
  // (1.25, 2.5) X = 0.5: 2.5 and 5 are ties and go to the even 2 and 4.
  ToolResult r = run_tool("quantize --format e2m1 --block 2 --shape 2,3 --axis 0", x);
  REQUIRE(r.status == 0);
  CHECK(r.out == "0.5\n3\n1\n6\n0.75\n2\n");
  // Axis -1: blocks (0.5, 3) X = 0.5; (1.25) X = 0.25: 5 -> 4; (6, 0.75) X = 1: 0.75 is a tie
  // between 0.5 (code 001) and 1 (code 010) and goes to 1; (2.5) X = 0.5: 5 -> 4.
  r = run_tool("quantize --format e2m1 --block 2 --shape 2,3", x);
  REQUIRE(r.status == 0);
  CHECK(r.out == "0.5\n3\n1\n6\n1\n2\n");
}

TEST_CASE("quantize --binary gives the same bits as text mode") {
  std::vector<float> x;
  uint32_t state = 12345;
  for (int i = 0; i < 200; ++i) {
    state = state * 1664525u + 1013904223u;
    x.push_back(from_bits((state & 0x807FFFFFu) | (uint32_t(110 + (state >> 27)) << 23)));
  }
  x.insert(x.end(), {0.0f, -0.0f, 1e-40f, -1e-40f, INFINITY, -INFINITY});
  for (const char* format : {"nvfp4 --round sr --seed 9", "bf16", "e4m3 --overflow saturate"}) {
    const ToolResult text = run_tool(std::string("quantize --format ") + format, text_of(x));
    const ToolResult binary =
        run_tool(std::string("quantize --binary --format ") + format, bytes_of(x));
    REQUIRE(text.status == 0);
    REQUIRE(binary.status == 0);
    const std::vector<float> from_text = parse_text(text.out);
    const std::vector<uint32_t> from_binary = words_of(binary.out);
    REQUIRE(from_text.size() == x.size());
    REQUIRE(from_binary.size() == x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      // Text prints every NaN as "nan"; binary keeps the bits, which must still be a NaN.
      if (std::isnan(from_text[i]))
        CHECK(std::isnan(from_bits(from_binary[i])));
      else
        CHECK_MESSAGE(bits_of(from_text[i]) == from_binary[i], format, " element ", i);
    }
  }
}

TEST_CASE("quantize to bf16 matches bit-arithmetic round-to-nearest-even") {
  std::vector<float> x = {from_bits(0x3f808000u),   // tie, lower neighbour even: stays
                          from_bits(0x3f818000u),   // tie, lower neighbour odd: rounds up
                          from_bits(0xbf818001u),   // just above a tie: away from zero
                          from_bits(0x7f7fffffu),   // fp32 max: overflows to inf
                          from_bits(0x00012345u)};  // an fp32 subnormal
  uint32_t state = 777;
  for (int i = 0; i < 100; ++i) {
    state = state * 1664525u + 1013904223u;
    const uint32_t b = state ^ (state >> 13);
    x.push_back(from_bits((b & 0x7F800000u) == 0x7F800000u ? b ^ 0x40000000u : b));  // finite
  }
  const ToolResult r = run_tool("quantize --format bf16", text_of(x));
  REQUIRE(r.status == 0);
  const std::vector<float> y = parse_text(r.out);
  REQUIRE(y.size() == x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const uint32_t b = bits_of(x[i]);
    const uint32_t expected = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
    CHECK_MESSAGE(bits_of(y[i]) == expected, "x = ", text_of({x[i]}));
  }
}

TEST_CASE("unknown format and unknown flag exit 2 with one stderr line naming the problem") {
  ToolResult r = run_tool("quantize --format e9z9", "1\n");
  check_one_line_error(r);
  CHECK(r.err.find("\"e9z9\"") != std::string::npos);
  CHECK(r.err.find("mxfp4") != std::string::npos);  // lists the valid names

  r = run_tool("cast 1 --to e4m3 --bogus");
  check_one_line_error(r);
  CHECK(r.err.find("--bogus") != std::string::npos);

  r = run_tool("cast 1 --to nosuch");
  check_one_line_error(r);
  CHECK(r.err.find("e4m3") != std::string::npos);

  r = run_tool("cast 1.5x --to e4m3");
  check_one_line_error(r);
  CHECK(r.err.find("1.5x") != std::string::npos);

  check_one_line_error(run_tool("cast 1 --to"));                            // missing value
  check_one_line_error(run_tool("cast 1"));                                 // missing --to
  check_one_line_error(run_tool("cast 1 --to e4m3 --round rnx"));           // bad mode
  check_one_line_error(run_tool("quantize --format mxfp4 --block 0"));      // bad number
  check_one_line_error(run_tool("quantize --format mxfp4 --scale ue4m3"));  // mx needs ue8m0
  check_one_line_error(run_tool("quantize --format e4m3 --tensor-scale"));  // no blocks
  check_one_line_error(run_tool("frobnicate"));
}

TEST_CASE("a malformed stdin line reports its line number; bad binary and shape input fail") {
  ToolResult r = run_tool("quantize --format e4m3", "1\n2\n\n0x1p\n5\n");
  check_one_line_error(r);
  CHECK(r.err.find("line 4") != std::string::npos);
  CHECK(r.err.find("\"0x1p\"") != std::string::npos);

  check_one_line_error(run_tool("quantize --format e4m3 --binary", "abcdef"));
  r = run_tool("quantize --format e4m3 --shape 2,2", "1\n2\n3\n");
  check_one_line_error(r);
  CHECK(r.err.find("stdin has 3") != std::string::npos);
}

TEST_CASE("--help prints usage and exits 0; no command prints the command list") {
  for (const char* args : {"--help", "cast --help", "quantize -h", "formats --help", ""}) {
    const ToolResult r = run_tool(args);
    CHECK_MESSAGE(r.status == 0, args);
    CHECK(r.out.find("Usage: lattice") != std::string::npos);
    CHECK(r.err.empty());
  }
  CHECK(run_tool("").out.find("quantize") != std::string::npos);
}

TEST_CASE("stacks lists every named stack with its canonical spec; a spec argument expands") {
  ToolResult r = run_tool("stacks");
  CHECK(r.status == 0);
  for (const char* row : {"| mxfp4 ", "| gemm=mxfp4 ", "| nvfp4          | 0.5 | gemm=nvfp4 ",
                          "| pure-fp4-e4m3  |   0 | gemm=e2m1:b16:scale=e4m3:rule=encode ",
                          "| pure-fp4-fp32 ", "| ue5m3-fp4 ", "| fp8-e4m3 "})
    CHECK_MESSAGE(r.out.find(row) != std::string::npos, row);
  r = run_tool("stacks 'mxfp4,gemm.sr=backward,gemm.max=absmax'");
  CHECK(r.status == 0);
  CHECK(r.out.find("| 3.5 | gemm=mxfp4,gemm.sr=backward,gemm.max=absmax ") != std::string::npos);
  r = run_tool("stacks 'mxfp4,gemm.hadamard=sometimes'");
  check_one_line_error(r);
  CHECK(r.err.find("\"gemm.hadamard=sometimes\"") != std::string::npos);
}
