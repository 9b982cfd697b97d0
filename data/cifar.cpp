// The CIFAR-10 binary reader.
#include "data/cifar.h"

#include <cstring>
#include <filesystem>

#include "data/file_io.h"

namespace lattice::data {

Cifar10Dataset::Cifar10Dataset(const std::vector<std::string>& paths, CifarOptions options)
    : options_(std::move(options)), normalize_(3, options_.normalization, "cifar10") {
  LATTICE_CHECK(!paths.empty(), "[cifar10] no batch files given");
  for (const std::string& path : paths) {
    const std::vector<uint8_t> bytes = read_file_bytes(path, "cifar10");
    LATTICE_CHECK(!bytes.empty() && bytes.size() % kRecordBytes == 0, "[cifar10] ", path,
                  ": truncated: ", bytes.size(), " bytes, expected a positive multiple of the ",
                  kRecordBytes, "-byte record");
    const size_t records = bytes.size() / kRecordBytes;
    for (size_t r = 0; r < records; ++r) {
      const uint8_t* record = bytes.data() + r * kRecordBytes;
      LATTICE_CHECK(record[0] < 10, "[cifar10] ", path, ": record ", r, " has label ",
                    int(record[0]), ", expected 0 to 9");
      labels_.push_back(record[0]);
      pixels_.insert(pixels_.end(), record + 1, record + kRecordBytes);
    }
  }
}

Example Cifar10Dataset::get(int64_t index) const {
  check_index("cifar10", index, size());
  const uint8_t* pixels = pixels_.data() + size_t(index) * (kRecordBytes - 1);
  return {normalize_(pixels, 32, 32, false),
          scalar_tensor(double(labels_[size_t(index)]), DType::int64)};
}

Batch Cifar10Dataset::get_batch(std::vector<int64_t> indices, int threads) const {
  const ByteImages images{pixels_.data(), labels_.data(), size(), 3, 32, 32, "cifar10"};
  return normalized_batch(images, normalize_, Shape{3, 32, 32}, std::move(indices), threads);
}

std::shared_ptr<Cifar10Dataset> load_cifar10(const std::string& directory,
                                             bool train,
                                             CifarOptions options) {
  namespace fs = std::filesystem;
  LATTICE_CHECK(fs::is_directory(directory), "[cifar10] ", directory,
                ": no such directory; expected data_batch_1..5.bin and test_batch.bin");
  std::vector<std::string> paths;
  if (train) {
    for (int i = 1; i <= 5; ++i) {
      paths.push_back((fs::path(directory) / concat("data_batch_", i, ".bin")).string());
    }
  } else {
    paths.push_back((fs::path(directory) / "test_batch.bin").string());
  }
  for (const std::string& path : paths) {
    LATTICE_CHECK(fs::exists(path), "[cifar10] ", path,
                  ": no such file; expected the CIFAR-10 binary version (data_batch_1..5.bin, "
                  "test_batch.bin)");
  }
  return std::make_shared<Cifar10Dataset>(paths, std::move(options));
}

}  // namespace lattice::data
