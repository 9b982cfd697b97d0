// The Debian English corpus (see english_corpus.h).
#include "data/english_corpus.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "data/text.h"

namespace lattice::data {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFortunesDir = "/usr/share/games/fortunes";
constexpr const char* kBibleCommand = "bible -f 'Gen1:1-Rev22:21' 2>/dev/null";

/// The fortunes, one paragraph each (their "%" separator lines become blank lines).
std::string fortunes_text() {
  std::vector<fs::path> files;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(kFortunesDir, error))
    if (entry.path().extension() == ".u8") files.push_back(entry.path());
  LATTICE_CHECK(!error && !files.empty(), "[corpus] no fortune files in ", kFortunesDir,
                "; expected Debian's fortunes package (apt-get install fortunes)");
  std::sort(files.begin(), files.end());  // a directory's order is not fixed
  std::string text;
  for (const fs::path& file : files) {
    std::istringstream in(read_text_file(file.string()));
    for (std::string line; std::getline(in, line);) text += line == "%" ? "\n" : line + "\n";
    text += "\n";
  }
  return text;
}

/// The Bible as `bible` prints it ("Ge1:1 In the beginning ..."), one paragraph per chapter
/// with the verse references dropped.
std::string bible_text() {
  const std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(kBibleCommand, "r"), ::pclose);
  LATTICE_CHECK(pipe != nullptr, "[corpus] cannot run `bible`");
  std::string output;
  char buffer[1 << 16];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe.get())) > 0;)
    output.append(buffer, n);
  LATTICE_CHECK(output.size() > 1000000, "[corpus] `", kBibleCommand, "` printed ", output.size(),
                " bytes; expected the King James Bible from Debian's bible-kjv package "
                "(apt-get install bible-kjv)");
  std::string text, chapter;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':'), space = line.find(' ');
    if (colon == std::string::npos || space == std::string::npos || colon > space) continue;
    const std::string verse_chapter = line.substr(0, colon);  // "Ge1"
    if (verse_chapter != chapter && !chapter.empty()) text += "\n";
    chapter = verse_chapter;
    text += line.substr(space + 1) + "\n";
  }
  return text + "\n";
}

void write_text(const fs::path& path, const std::string& text) {
  const fs::path partial = path.string() + ".partial";
  std::ofstream out(partial, std::ios::binary);
  out << text;
  out.close();
  LATTICE_CHECK(!out.fail(), "[corpus] cannot write ", partial.string());
  fs::rename(partial, path);
}

}  // namespace

TextSplit split_paragraphs(std::string_view text, int every) {
  LATTICE_CHECK(every >= 2, "[corpus] split every ", every, " paragraphs; expected at least 2");
  TextSplit split;
  std::string paragraph;
  int64_t index = 0;
  const auto flush = [&] {
    if (paragraph.empty()) return;
    (index % every == every - 1 ? split.validation : split.train) += paragraph + "\n";
    paragraph.clear();
    ++index;
  };
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos)
      flush();
    else
      paragraph.append(line).append("\n");
    start = end + 1;
  }
  flush();
  return split;
}

CorpusFiles debian_english_corpus(const std::string& directory) {
  const fs::path dir(directory);
  const CorpusFiles files{(dir / "train.txt").string(), (dir / "validation.txt").string()};
  if (fs::exists(files.train) && fs::exists(files.validation)) return files;
  std::error_code error;
  fs::create_directories(dir, error);
  LATTICE_CHECK(!error, "[corpus] cannot create ", directory, ": ", error.message());
  const TextSplit split = split_paragraphs(fortunes_text() + bible_text());
  write_text(files.validation, split.validation);
  write_text(files.train, split.train);
  return files;
}

}  // namespace lattice::data
