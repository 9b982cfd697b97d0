// English prose for the language-model trainers without a download: the `fortunes` files and
// the King James Bible of Debian's `bible-kjv` (printed by its `bible` command), split into
// training and validation text by a fixed rule and cached as two plain text files.
#pragma once

#include <string>
#include <string_view>

namespace lattice::data {

/// Text cut into paragraphs (runs of lines between blank lines), paragraph i going to
/// validation when i % every == every - 1 and to training otherwise; both keep their
/// paragraphs' order and end each paragraph with a blank line.
struct TextSplit {
  std::string train, validation;
};
TextSplit split_paragraphs(std::string_view text, int every = 20);

/// The training and validation files of the Debian English corpus in `directory`.
struct CorpusFiles {
  std::string train, validation;
};

/// Builds (once) `directory`/train.txt and validation.txt from /usr/share/games/fortunes/*.u8
/// (fortunes separated by "%" lines become paragraphs) and `bible -f Gen1:1-Rev22:21` (one
/// paragraph per chapter, verse references dropped), split by split_paragraphs(.., 20).
/// Reuses the files when both exist. Throws lattice::Error naming the missing package
/// ("apt-get install fortunes bible-kjv", as scripts/setup.sh does) or the unwritable folder.
CorpusFiles debian_english_corpus(const std::string& directory);

}  // namespace lattice::data
