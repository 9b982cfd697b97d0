// The processes of a data-parallel run (MPI's world under mpirun, else this process alone) and
// the few point-to-point and collective operations the trainer's fixed-order reduction needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace lattice::distributed {

/// This run's processes. A build with MPI (LATTICE_MPI) joins MPI's world only when the process
/// was started by a launcher (OMPI_COMM_WORLD_SIZE or PMI_SIZE set), so a plain single-process
/// run never initialises MPI and needs no MPI runtime.
class Communicator {
 public:
  /// The run's communicator, set up on the first call. Throws lattice::Error when launched as
  /// several processes by a build without MPI.
  static Communicator& world();

  int rank() const {
    return rank_;
  }
  int size() const {
    return size_;
  }
  bool root() const {
    return rank_ == 0;
  }
  /// This process's place among the run's processes on its own machine, and their number (MPI's
  /// shared-memory split): a rank uses GPU local_rank() mod the machine's device count.
  int local_rank() const {
    return local_rank_;
  }
  int local_size() const {
    return local_size_;
  }

  /// Blocking point-to-point transfer of `values` to/from rank `peer` (sizes must match).
  void send(std::span<const float> values, int peer) const;
  void receive(std::span<float> values, int peer) const;
  /// Every rank ends with rank `root`'s `values`.
  void broadcast(std::span<float> values, int root) const;
  void broadcast(std::span<std::byte> bytes, int root) const;
  /// `all` (size() x mine.size()) holds every rank's `mine`, rank 0's first, on every rank.
  void all_gather(std::span<const double> mine, std::span<double> all) const;
  /// Ends every process of the run with `status` when it runs as several (a failed rank must
  /// not leave the others waiting in a collective); otherwise returns.
  static void abort_run(int status) noexcept;

 private:
  Communicator();
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
};

}  // namespace lattice::distributed
