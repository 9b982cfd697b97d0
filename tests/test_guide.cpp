// The README's guide "A new model in the C++ API": its listing is examples/guide/new_model.cpp
// unchanged (so the two cannot drift), and that program, built as new_model, trains (the loss
// falls) and saves a safetensors file of the model's tensors.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "process_support.h"
#include "tensor/safetensors.h"

using namespace lattice;

namespace {

const std::string kSource = LATTICE_SOURCE_DIR;

/// The first ```cpp block after `heading` in `markdown`, without its fence lines.
std::string code_block_after(const std::string& markdown, const std::string& heading) {
  const size_t section = markdown.find("\n" + heading + "\n");
  REQUIRE(section != std::string::npos);
  const std::string open = "\n```cpp\n";
  const size_t begin = markdown.find(open, section);
  REQUIRE(begin != std::string::npos);
  const size_t end = markdown.find("\n```\n", begin + open.size());
  REQUIRE(end != std::string::npos);
  return markdown.substr(begin + open.size(), end + 1 - begin - open.size());
}

}  // namespace

TEST_CASE("the README's guide shows examples/guide/new_model.cpp exactly") {
  const std::string readme = test::read_file(kSource + "/README.md");
  const std::string program = test::read_file(kSource + "/examples/guide/new_model.cpp");
  REQUIRE(!program.empty());
  CHECK(code_block_after(readme, "## A new model in the C++ API") == program);
}

TEST_CASE("the guide's program trains (loss falls) and saves the model's tensors") {
  const std::string out = (test::scratch_dir() / "guide.safetensors").string();
  // One OpenMP thread: on a busy machine spinning workers make this tiny model 30x slower.
  const char* threads = std::getenv("OMP_NUM_THREADS");
  const std::string previous = threads ? threads : "";
  ::setenv("OMP_NUM_THREADS", "1", 1);
  const test::ProgramResult result =
      test::run_program(std::string(LATTICE_BIN_DIR) + "/new_model", "'" + out + "' 30");
  if (threads)
    ::setenv("OMP_NUM_THREADS", previous.c_str(), 1);
  else
    ::unsetenv("OMP_NUM_THREADS");
  INFO(result.err);
  REQUIRE(result.status == 0);
  std::istringstream lines(result.out);
  std::vector<double> losses;
  for (std::string line; std::getline(lines, line);) {
    int step = 0;
    double loss = 0;
    if (std::sscanf(line.c_str(), "step %d loss %lf", &step, &loss) == 2) losses.push_back(loss);
  }
  REQUIRE(losses.size() == 2);
  // Four balanced classes start near ln 4 = 1.386; quadrants are easy to separate.
  CHECK(losses.front() > 1.0);
  CHECK(losses.back() < 0.5 * losses.front());

  std::set<std::string> names;
  for (const auto& [name, tensor] : load_safetensors(out).tensors) names.insert(name);
  CHECK(names == std::set<std::string>{"embed.weight", "embed.bias", "block.gain",
                                       "block.up.weight", "block.up.bias", "block.down.weight",
                                       "block.down.bias", "head.weight", "head.bias"});
}
