// The image classification data the vit and cifar trainers share: Fashion-MNIST (Debian's
// dataset-fashion-mnist), CIFAR-10 binary batches, or an ImageNet-style folder with train/ and
// val/, with their image geometry and the crop+flip augmentation the CIFAR-style sets train with.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "data/augment.h"
#include "data/cifar.h"
#include "data/idx.h"
#include "data/image_folder.h"

namespace lattice::examples {

struct ImageSplits {
  std::shared_ptr<const data::Dataset> train, test;
  int64_t channels = 0, size = 0, classes = 0;
  bool augment = false;  // random crops and flips while training
};

/// `dataset`: fashion-mnist (dir defaults to Debian's copy), cifar10 (dir required: CIFAR-10 is
/// not in Debian) or folder (dir/train/<class>/..., dir/val/<class>/..., resized and cropped to
/// `folder_size`). Errors are one line prefixed "[trainer]".
inline ImageSplits load_image_splits(const std::string& trainer,
                                     const std::string& dataset,
                                     const std::string& dir,
                                     int64_t folder_size) {
  if (dataset == "fashion-mnist") {
    const data::IdxOptions options{
        .flatten = false, .normalization = {{data::kFashionMnistMean}, {data::kFashionMnistStd}}};
    const std::string root = dir.empty() ? data::kFashionMnistDir : dir;
    return {data::load_mnist(root, true, options),
            data::load_mnist(root, false, options),
            1,
            28,
            10,
            false};
  }
  if (dataset == "cifar10") {
    LATTICE_CHECK(!dir.empty(), "[", trainer,
                  "] --dataset cifar10 needs --data DIR with CIFAR-10's binary batches "
                  "(data_batch_1.bin .. data_batch_5.bin, test_batch.bin; CIFAR-10 is not in "
                  "Debian)");
    const data::CifarOptions options{.normalization = data::kCifar10Normalization};
    return {data::load_cifar10(dir, true, options),
            data::load_cifar10(dir, false, options),
            3,
            32,
            10,
            true};
  }
  LATTICE_CHECK(dataset == "folder", "[", trainer, "] --dataset \"", dataset,
                "\": expected fashion-mnist, cifar10 or folder");
  LATTICE_CHECK(!dir.empty(), "[", trainer,
                "] --dataset folder needs --data DIR with train/ and val/");
  const data::ImageFolderOptions options{.size = int(folder_size),
                                         .normalization = data::kCifar10Normalization};
  const std::filesystem::path root(dir);
  auto train = std::make_shared<data::ImageFolderDataset>((root / "train").string(), options);
  auto test = std::make_shared<data::ImageFolderDataset>((root / "val").string(), options);
  LATTICE_CHECK(train->class_names() == test->class_names(), "[", trainer, "] ", dir,
                ": train/ and val/ hold different classes (", train->class_names().size(), " and ",
                test->class_names().size(), ")");
  const int64_t classes = int64_t(train->class_names().size());
  return {train, test, 3, folder_size, classes, true};
}

/// The training loader: shuffled batches, with random crops (padding 4) and flips when the
/// splits ask for augmentation.
inline data::LoaderOptions training_loader_options(const ImageSplits& splits,
                                                   int64_t batch,
                                                   uint64_t seed) {
  data::LoaderOptions options{.batch_size = batch, .seed = seed};
  if (splits.augment) options.transform = data::RandomCropFlip({.padding = 4, .seed = seed});
  return options;
}

}  // namespace lattice::examples
