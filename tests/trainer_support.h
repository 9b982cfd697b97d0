// The trainers' test helpers: their binaries, tiny generated data sets in the formats they read
// (MNIST IDX, CIFAR-10 batches, WikiText), and readers of a run's metrics, summary and
// checkpoint. Shared by test_trainers.cpp and test_trainer_programs.cpp.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "data/file_io.h"
#include "data/idx.h"
#include "process_support.h"
#include "tensor/safetensors.h"

namespace lattice::test {

namespace fs = std::filesystem;

inline std::string trainer(const std::string& name) {
  return std::string(LATTICE_BIN_DIR) + "/" + name;
}

/// A tiny MNIST-format directory: 64 training and 32 test images of noise, labels i % 10.
inline const fs::path& tiny_mnist() {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "mnist";
    fs::create_directories(d);
    for (const auto& [prefix, count] : {std::pair{"train", 64}, std::pair{"t10k", 32}}) {
      std::vector<uint8_t> pixels(size_t(count) * 28 * 28), labels;
      for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t((i * 2654435761u) >> 24);
      for (int i = 0; i < count; ++i) labels.push_back(uint8_t(i % 10));
      lattice::data::write_idx_images((d / (std::string(prefix) + "-images-idx3-ubyte")).string(),
                                      pixels, count, 28, 28);
      lattice::data::write_idx_labels((d / (std::string(prefix) + "-labels-idx1-ubyte")).string(),
                                      labels);
    }
    return d;
  }();
  return dir;
}

inline std::vector<nlohmann::json> metrics(const fs::path& run) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(read_file(run / "metrics.jsonl"));
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

inline nlohmann::json summary(const fs::path& run) {
  return nlohmann::json::parse(read_file(run / "summary.json"));
}

inline std::string tiny_data_flags() {
  return "--hidden 16 --batch 16 --data '" + tiny_mnist().string() + "' ";
}

inline int64_t line_count(const std::string& text) {
  return std::count(text.begin(), text.end(), '\n');
}

/// The bytes of the run's checkpoint tensors (its one .safetensors file).
inline std::string checkpoint_tensors(const fs::path& run) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(run))
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  REQUIRE(files.size() == 1);
  return read_file(files[0]);
}

/// The values of the run's checkpoint tensors by name (as float32).
inline std::map<std::string, std::vector<float>> checkpoint_values(const fs::path& run) {
  std::map<std::string, std::vector<float>> values;
  for (const auto& entry : fs::directory_iterator(run))
    if (entry.path().extension() == ".safetensors")
      for (const auto& [name, tensor] : lattice::load_safetensors(entry.path().string()).tensors)
        values[name] = tensor.to_vector<float>();
  return values;
}

/// A tiny WikiText-format folder: wiki.train.raw and wiki.valid.raw of short repetitive
/// sentences, which a small model learns within a few steps.
inline const fs::path& tiny_wikitext() {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "wikitext";
    fs::create_directories(d);
    const char* subjects[] = {"the cat", "a dog", "the bird", "my fish"};
    const char* verbs[] = {"sat on", "looked at", "ran to", "slept by"};
    const char* objects[] = {"the mat.", "a tree.", "the door.", "my bed."};
    for (const auto& [name, lines] : {std::pair{"wiki.train.raw", 600}, {"wiki.valid.raw", 60}}) {
      std::ofstream out(d / name);
      for (int i = 0; i < lines; ++i)
        out << subjects[i % 4] << " " << verbs[(i / 4) % 4] << " " << objects[(i / 16) % 4] << "\n";
    }
    return d;
  }();
  return dir;
}

/// A CIFAR-10 binary folder: five training batches of 16 records and a test batch of 16, labels
/// i % 10 and pixels of a fixed hash.
inline const fs::path& tiny_cifar() {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "cifar";
    fs::create_directories(d);
    for (const std::string name : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                   "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"}) {
      std::string bytes;
      for (int i = 0; i < 16; ++i) {
        bytes += char(i % 10);
        for (int k = 0; k < 3072; ++k) bytes += char(((i * 3072 + k) * 2654435761u) >> 24);
      }
      std::ofstream(d / name, std::ios::binary) << bytes;
    }
    return d;
  }();
  return dir;
}

/// An ImageNet-style folder: two classes ("cats", "dogs") of four generated 20x20 RGB PNGs each
/// in train/ and val/.
inline const fs::path& tiny_image_folder() {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "image-folder";
    for (const char* split : {"train", "val"})
      for (const char* label : {"cats", "dogs"}) {
        fs::create_directories(d / split / label);
        for (int i = 0; i < 4; ++i) {
          std::vector<uint8_t> pixels(20 * 20 * 3);
          for (size_t k = 0; k < pixels.size(); ++k)
            pixels[k] = uint8_t((k * 7 + size_t(i) * 31 + (label[0] == 'c' ? 0 : 128)) & 255);
          data::write_png((d / split / label / (std::to_string(i) + ".png")).string(),
                          {.width = 20, .height = 20, .channels = 3, .pixels = pixels});
        }
      }
    return d;
  }();
  return dir;
}

}  // namespace lattice::test
