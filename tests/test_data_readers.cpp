// IDX (raw and gzip), CIFAR-10 and image-folder readers on small files written here: values
// read back exactly, normalisation, the standard layouts, and one-line errors for bad files.
// Also loads the real Fashion-MNIST package when it is installed.
#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "data/cifar.h"
#include "data/file_io.h"
#include "data/idx.h"
#include "data/image_folder.h"
#include "data_test_files.h"

using namespace lattice;
using namespace lattice::data;
using lattice::test::contains;
using lattice::test::error_message;
using lattice::test::TempDir;

namespace {

// 5 images of 3x4 pixels: pixel p of image k is (k*40 + p*7) mod 256; labels 0, 3, 9, 1, 4.
std::vector<uint8_t> idx_pixels() {
  std::vector<uint8_t> pixels(5 * 12);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t((i / 12) * 40 + (i % 12) * 7);
  return pixels;
}
const std::vector<uint8_t> kIdxLabels{0, 3, 9, 1, 4};

void truncate_file(const std::string& path, size_t keep) {
  std::filesystem::resize_file(path, keep);
}

}  // namespace

TEST_CASE("IDX images and labels read back exactly, raw and gzipped") {
  TempDir dir("idx_roundtrip");
  const std::vector<uint8_t> pixels = idx_pixels();
  for (const std::string suffix : {"", ".gz"}) {
    write_idx_images(dir.file("images" + suffix), pixels, 5, 3, 4);
    write_idx_labels(dir.file("labels" + suffix), kIdxLabels);
    IdxDataset data(dir.file("images" + suffix), dir.file("labels" + suffix));
    REQUIRE(data.size() == 5);
    CHECK(data.rows() == 3);
    CHECK(data.cols() == 4);
    for (int64_t k = 0; k < 5; ++k) {
      const Example example = data.get(k);
      CHECK(example.input.shape() == Shape{1, 3, 4});
      CHECK(example.target.dtype() == DType::int64);
      CHECK(example.target.item<int64_t>() == kIdxLabels[size_t(k)]);
      const std::vector<float> values = example.input.to_vector<float>();
      for (size_t p = 0; p < 12; ++p) CHECK(values[p] == float(pixels[size_t(k) * 12 + p]) / 255.f);
    }
  }
  // A gzip file is really compressed (the reader did gunzip it).
  CHECK(std::filesystem::file_size(dir.file("images.gz")) !=
        std::filesystem::file_size(dir.file("images")));
}

TEST_CASE("IDX options: flattened inputs and mean/std normalisation") {
  TempDir dir("idx_options");
  const std::vector<uint8_t> pixels = idx_pixels();
  write_idx_images(dir.file("images"), pixels, 5, 3, 4);
  write_idx_labels(dir.file("labels"), kIdxLabels);
  IdxDataset data(dir.file("images"), dir.file("labels"),
                  {.flatten = true, .normalization = {{kFashionMnistMean}, {kFashionMnistStd}}});
  const Example example = data.get(2);
  CHECK(example.input.shape() == Shape{12});
  CHECK(example.input.to_vector<float>()[5] ==
        (float(pixels[2 * 12 + 5]) / 255.f - kFashionMnistMean) / kFashionMnistStd);
}

TEST_CASE("IDX batches are the stacked examples, bit for bit, also through a subset") {
  TempDir dir("idx_batches");
  write_idx_images(dir.file("images"), idx_pixels(), 5, 3, 4);
  write_idx_labels(dir.file("labels"), kIdxLabels);
  const std::vector<int64_t> indices{4, 0, 4, 2};  // repeats and any order
  for (const bool flatten : {false, true}) {
    const auto data = std::make_shared<IdxDataset>(
        dir.file("images"), dir.file("labels"),
        IdxOptions{.flatten = flatten, .normalization = {{kFashionMnistMean}, {kFashionMnistStd}}});
    std::vector<Example> examples;
    for (const int64_t index : indices) examples.push_back(data->get(index));
    const Batch want = stack_examples(examples, indices);
    for (const int threads : {1, 2}) {
      CAPTURE(flatten);
      CAPTURE(threads);
      const Batch got = data->get_batch(indices, threads);
      CHECK(got.indices == indices);
      CHECK(got.input.shape() == want.input.shape());
      CHECK(got.input.to_vector<float>() == want.input.to_vector<float>());
      CHECK(got.target.shape() == want.target.shape());
      CHECK(got.target.to_vector<int64_t>() == want.target.to_vector<int64_t>());
    }
    // A subset asks its source for the mapped examples and keeps its own indices.
    const Subset subset(data, {3, 4, 0});
    const Batch through = subset.get_batch({1, 2}, 1);
    CHECK(through.indices == std::vector<int64_t>{1, 2});
    CHECK(through.input.to_vector<float>() == data->get_batch({4, 0}, 1).input.to_vector<float>());
    CHECK(through.target.to_vector<int64_t>() == std::vector<int64_t>{4, 0});
    CHECK(contains(error_message([&] { data->get_batch({1, 5}, 1); }), "[idx] index 5"));
    CHECK(contains(error_message([&] { subset.get_batch({3}, 1); }), "[subset] index 3"));
  }
}

TEST_CASE("load_mnist finds the four standard files, gzipped or not") {
  TempDir dir("idx_layout");
  const std::vector<uint8_t> pixels = idx_pixels();
  write_idx_images(dir.file("train-images-idx3-ubyte.gz"), pixels, 5, 3, 4);
  write_idx_labels(dir.file("train-labels-idx1-ubyte.gz"), kIdxLabels);
  write_idx_images(dir.file("t10k-images-idx3-ubyte"),
                   std::vector<uint8_t>(pixels.begin(), pixels.begin() + 24), 2, 3, 4);
  write_idx_labels(dir.file("t10k-labels-idx1-ubyte"), {7, 8});
  CHECK(load_mnist(dir.path().string(), true)->size() == 5);
  const auto test = load_mnist(dir.path().string(), false);
  CHECK(test->size() == 2);
  CHECK(test->get(1).target.item<int64_t>() == 8);

  std::filesystem::remove(dir.file("t10k-labels-idx1-ubyte"));
  CHECK(error_message([&] { load_mnist(dir.path().string(), false); }) ==
        concat("[idx] ", dir.path().string(),
               ": no t10k-labels-idx1-ubyte[.gz]; expected the four MNIST files (train/t10k "
               "images and labels)"));
  CHECK(contains(error_message([&] { load_mnist(dir.file("nowhere"), true); }),
                 "nowhere: no such directory"));
}

TEST_CASE("IDX errors: wrong magic, truncated raw and gzip files, count mismatch, missing file") {
  TempDir dir("idx_errors");
  const std::vector<uint8_t> pixels = idx_pixels();
  write_idx_images(dir.file("images"), pixels, 5, 3, 4);
  write_idx_labels(dir.file("labels"), kIdxLabels);

  CHECK(error_message([&] { IdxDataset(dir.file("labels"), dir.file("labels")); }) ==
        concat("[idx] ", dir.file("labels"),
               ": magic 0x00000801, expected 0x00000803 (idx3 uint8 images)"));
  CHECK(error_message([&] { IdxDataset(dir.file("images"), dir.file("images")); }) ==
        concat("[idx] ", dir.file("images"),
               ": magic 0x00000803, expected 0x00000801 (idx1 uint8 labels)"));

  write_idx_labels(dir.file("four_labels"), {1, 2, 3, 4});
  CHECK(error_message([&] { IdxDataset(dir.file("images"), dir.file("four_labels")); }) ==
        concat("[idx] ", dir.file("four_labels"), ": 4 labels, expected 5 (the image count of ",
               dir.file("images"), ")"));

  write_idx_images(dir.file("short"), pixels, 5, 3, 4);
  truncate_file(dir.file("short"), 16 + 50);
  CHECK(error_message([&] { IdxDataset(dir.file("short"), dir.file("labels")); }) ==
        concat("[idx] ", dir.file("short"), ": truncated: 66 bytes, expected 16 + 5*3*4 = 76"));
  truncate_file(dir.file("short"), 10);
  CHECK(contains(error_message([&] { IdxDataset(dir.file("short"), dir.file("labels")); }),
                 "truncated: 10 bytes, expected a 16-byte header"));

  write_idx_images(dir.file("short.gz"), pixels, 5, 3, 4);
  truncate_file(dir.file("short.gz"), std::filesystem::file_size(dir.file("short.gz")) - 12);
  const std::string gzip_error =
      error_message([&] { IdxDataset(dir.file("short.gz"), dir.file("labels")); });
  CHECK(contains(gzip_error, concat("[idx] ", dir.file("short.gz"), ": ")));
  CHECK((contains(gzip_error, "corrupt gzip stream") || contains(gzip_error, "truncated")));

  // Sizes whose product overflows 64 bits are reported as written, not wrapped around.
  write_file_bytes(dir.file("huge"),
                   {0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255});
  CHECK(error_message([&] { IdxDataset(dir.file("huge"), dir.file("labels")); }) ==
        concat("[idx] ", dir.file("huge"),
               ": truncated: 16 bytes, expected 16 + 4294967295*4294967295*4294967295"));
  CHECK(error_message([&] { IdxDataset(dir.path().string(), dir.file("labels")); }) ==
        concat("[idx] ", dir.path().string(), ": is a directory, expected a file"));
  CHECK(error_message([&] { IdxDataset(dir.file("absent"), dir.file("labels")); }) ==
        concat("[idx] ", dir.file("absent"), ": cannot open (No such file or directory)"));
  CHECK(contains(error_message([&] { IdxDataset(dir.file("images"), dir.file("labels")).get(5); }),
                 "[idx] index 5 out of range"));
}

TEST_CASE("the real Fashion-MNIST package loads: 60000 train and 10000 test images of 28x28") {
  if (!std::filesystem::exists(std::filesystem::path(kFashionMnistDir) /
                               "train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: Fashion-MNIST not installed at ", kFashionMnistDir,
            " (Debian package dataset-fashion-mnist)");
    return;
  }
  const auto train = load_mnist(kFashionMnistDir, true);
  const auto test = load_mnist(kFashionMnistDir, false);
  CHECK(train->size() == 60000);
  CHECK(test->size() == 10000);
  CHECK(train->get(0).input.shape() == Shape{1, 28, 28});
  std::vector<int> per_class(10, 0);
  for (int64_t i = 0; i < test->size(); ++i) {
    REQUIRE(test->label(i) < 10);
    ++per_class[test->label(i)];
  }
  for (int count : per_class) CHECK(count == 1000);  // Fashion-MNIST's test set is balanced
}

namespace {
// CIFAR record r of a file: label r % 10, pixel p = (r * 31 + p) mod 256.
std::vector<uint8_t> cifar_records(int records, int first) {
  std::vector<uint8_t> bytes;
  for (int r = first; r < first + records; ++r) {
    bytes.push_back(uint8_t(r % 10));
    for (int p = 0; p < 3072; ++p) bytes.push_back(uint8_t(r * 31 + p));
  }
  return bytes;
}
}  // namespace

TEST_CASE("CIFAR-10 records read back as (3, 32, 32) planes, with per-channel normalisation") {
  TempDir dir("cifar");
  for (int i = 1; i <= 5; ++i) {
    write_file_bytes(dir.file(concat("data_batch_", i, ".bin")), cifar_records(2, 2 * (i - 1)));
  }
  write_file_bytes(dir.file("test_batch.bin"), cifar_records(3, 100));
  const auto train = load_cifar10(dir.path().string(), true);
  REQUIRE(train->size() == 10);
  const Example example = train->get(7);
  CHECK(example.input.shape() == Shape{3, 32, 32});
  CHECK(example.target.item<int64_t>() == 7);
  const std::vector<float> values = example.input.to_vector<float>();
  for (int p : {0, 1023, 1024, 3071})
    CHECK(values[size_t(p)] == float(uint8_t(7 * 31 + p)) / 255.f);

  const auto test =
      load_cifar10(dir.path().string(), false, {.normalization = kCifar10Normalization});
  REQUIRE(test->size() == 3);
  const std::vector<float> normalised = test->get(1).input.to_vector<float>();
  CHECK(normalised[2048 + 5] == (float(uint8_t(101 * 31 + 2048 + 5)) / 255.f - 0.4465f) / 0.2616f);
  CHECK(test->get(1).target.item<int64_t>() == 1);

  // A batch is the stacked examples, bit for bit.
  const std::vector<int64_t> indices{2, 0, 2};
  std::vector<Example> examples;
  for (const int64_t index : indices) examples.push_back(test->get(index));
  const Batch want = stack_examples(examples, indices);
  const Batch got = test->get_batch(indices, 2);
  CHECK(got.input.shape() == Shape{3, 3, 32, 32});
  CHECK(got.input.to_vector<float>() == want.input.to_vector<float>());
  CHECK(got.target.to_vector<int64_t>() == want.target.to_vector<int64_t>());
  CHECK(contains(error_message([&] { test->get_batch({3}, 1); }), "[cifar10] index 3"));
}

TEST_CASE("CIFAR-10 errors: truncated record, bad label, missing batch file") {
  TempDir dir("cifar_errors");
  std::vector<uint8_t> bytes = cifar_records(2, 0);
  bytes.pop_back();
  write_file_bytes(dir.file("test_batch.bin"), bytes);
  CHECK(error_message([&] { load_cifar10(dir.path().string(), false); }) ==
        concat("[cifar10] ", dir.file("test_batch.bin"),
               ": truncated: 6145 bytes, expected a positive multiple of the 3073-byte record"));
  bytes = cifar_records(2, 0);
  bytes[3073] = 12;
  write_file_bytes(dir.file("test_batch.bin"), bytes);
  CHECK(
      error_message([&] { load_cifar10(dir.path().string(), false); }) ==
      concat("[cifar10] ", dir.file("test_batch.bin"), ": record 1 has label 12, expected 0 to 9"));
  CHECK(contains(error_message([&] { load_cifar10(dir.path().string(), true); }),
                 "data_batch_1.bin: no such file"));
}

namespace {
// A width x height RGB image whose pixel (x, y) is (x*10 + 5, y*20 + 3, 200).
Image gradient_image(int width, int height) {
  Image image{.width = width, .height = height, .channels = 3, .pixels = {}};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.pixels.push_back(uint8_t(x * 10 + 5));
      image.pixels.push_back(uint8_t(y * 20 + 3));
      image.pixels.push_back(200);
    }
  }
  return image;
}
}  // namespace

TEST_CASE("image folders: sorted class subfolders, PNG pixels exact, JPEG close, crop centred") {
  TempDir dir("image_folder");
  for (const char* name : {"zebra", "ant"}) std::filesystem::create_directory(dir.path() / name);
  write_png(dir.file("zebra/b.png"), gradient_image(4, 4));
  write_png(dir.file("zebra/a.PNG"), gradient_image(6, 4));
  Image gray{.width = 4, .height = 4, .channels = 3, .pixels = std::vector<uint8_t>(48, 120)};
  write_jpeg(dir.file("ant/x.jpg"), gray, 100);
  write_file_bytes(dir.file("ant/notes.txt"), {'h', 'i'});

  ImageFolderDataset data(dir.path().string(), {.size = 4});
  CHECK(data.class_names() == std::vector<std::string>{"ant", "zebra"});
  REQUIRE(data.size() == 3);
  CHECK(data.label(0) == 0);
  CHECK(data.path(1) == dir.file("zebra/a.PNG"));

  // b.png is already 4x4: pixels exactly byte/255, planar (3, 4, 4).
  const Example square = data.get(2);
  CHECK(square.input.shape() == Shape{3, 4, 4});
  CHECK(square.target.item<int64_t>() == 1);
  const std::vector<float> values = square.input.to_vector<float>();
  CHECK(values[0 * 16 + 1 * 4 + 2] == float(2 * 10 + 5) / 255.f);  // red at (x=2, y=1)
  CHECK(values[1 * 16 + 3 * 4 + 0] == float(3 * 20 + 3) / 255.f);  // green at (x=0, y=3)
  CHECK(values[2 * 16 + 5] == 200.f / 255.f);

  // a.PNG is 6x4: already at the shorter side 4, so the crop keeps columns 1..4.
  const std::vector<float> cropped = data.get(1).input.to_vector<float>();
  for (int x = 0; x < 4; ++x) CHECK(cropped[size_t(x)] == float((x + 1) * 10 + 5) / 255.f);

  // The JPEG of a flat gray decodes to within 2 levels of it.
  for (float v : data.get(0).input.to_vector<float>()) CHECK(std::abs(v * 255.f - 120.f) <= 2.f);
}

TEST_CASE("image folders resize the shorter side, then crop; normalisation per channel") {
  TempDir dir("image_resize");
  std::filesystem::create_directory(dir.path() / "only");
  Image flat{.width = 16, .height = 8, .channels = 3, .pixels = {}};
  for (int p = 0; p < 16 * 8; ++p) flat.pixels.insert(flat.pixels.end(), {10, 100, 250});
  write_png(dir.file("only/flat.png"), flat);
  ImageFolderDataset data(
      dir.path().string(),
      {.size = 3, .resize = 4, .normalization = {{0.5f, 0.5f, 0.5f}, {0.25f, 0.5f, 1.f}}});
  const Example example = data.get(0);
  CHECK(example.input.shape() == Shape{3, 3, 3});
  const std::vector<float> values = example.input.to_vector<float>();
  CHECK(values[0] == doctest::Approx((10.f / 255.f - 0.5f) / 0.25f).epsilon(1e-6));
  CHECK(values[9 + 4] == doctest::Approx((100.f / 255.f - 0.5f) / 0.5f).epsilon(1e-6));
  CHECK(values[18 + 8] == doctest::Approx(250.f / 255.f - 0.5f).epsilon(1e-6));
}

TEST_CASE("a flat folder of images (FFHQ-style) is one class") {
  TempDir dir("image_flat");
  write_png(dir.file("00001.png"), gradient_image(4, 4));
  write_png(dir.file("00000.png"), gradient_image(5, 4));
  ImageFolderDataset data(dir.path().string(), {.size = 4});
  REQUIRE(data.size() == 2);
  CHECK(data.class_names().size() == 1);
  CHECK(data.path(0) == dir.file("00000.png"));
  CHECK(data.get(1).target.item<int64_t>() == 0);
  CHECK(data.get(1).input.to_vector<float>()[0] == 5.f / 255.f);
}

TEST_CASE("image folder errors: missing root, no classes, no images, an unreadable image") {
  TempDir dir("image_errors");
  CHECK(error_message([&] { ImageFolderDataset(dir.file("absent")); }) ==
        concat("[image_folder] ", dir.file("absent"),
               ": no such directory; expected one subfolder of images per class"));
  CHECK(contains(error_message([&] { ImageFolderDataset(dir.path().string()); }),
                 ": no class subfolders and no images"));
  std::filesystem::create_directory(dir.path() / "cats");
  CHECK(contains(error_message([&] { ImageFolderDataset(dir.path().string()); }),
                 ": no .png/.jpg/.jpeg files in its 1 class subfolders"));
  write_file_bytes(dir.file("cats/broken.png"), {'n', 'o', 't', ' ', 'a', ' ', 'p', 'n', 'g'});
  ImageFolderDataset data(dir.path().string(), {.size = 8});
  const std::string message = error_message([&] { data.get(0); });
  CHECK(contains(
      message, concat("[image_folder] ", dir.file("cats/broken.png"), ": cannot decode image (")));
  CHECK(contains(message, "); expected a PNG or JPEG file"));
}
