// Communicator over MPI (builds with LATTICE_MPI) or over this process alone.
#include "distributed/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "core/error.h"

#if LATTICE_MPI
#include <mpi.h>
#endif

namespace lattice::distributed {

namespace {

/// The process count a launcher announced (OpenMPI's or a PMI launcher's), or 0 without one.
int launched_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return 0;
}

#if LATTICE_MPI
void check_mpi(int status, const char* call) {
  LATTICE_CHECK(status == MPI_SUCCESS, "[distributed] ", call, " failed with MPI error ", status);
}

/// An MPI element count (an int): larger messages would need splitting, which no model here needs.
int message_count(size_t values) {
  LATTICE_CHECK(values <= size_t(std::numeric_limits<int>::max()), "[distributed] a message of ",
                values, " values; expected at most 2^31 - 1");
  return int(values);
}

void finalize_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}
#endif

}  // namespace

Communicator& Communicator::world() {
  static Communicator communicator;
  return communicator;
}

Communicator::Communicator() {
  const int launched = launched_size();
#if LATTICE_MPI
  if (launched == 0) return;
  check_mpi(MPI_Init(nullptr, nullptr), "MPI_Init");
  std::atexit(finalize_mpi);
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  MPI_Comm machine;
  check_mpi(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &machine),
      "MPI_Comm_split_type");
  check_mpi(MPI_Comm_rank(machine, &local_rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(machine, &local_size_), "MPI_Comm_size");
  check_mpi(MPI_Comm_free(&machine), "MPI_Comm_free");
#else
  LATTICE_CHECK(launched <= 1, "[distributed] launched as ", launched,
                " processes, but this build has no MPI (configure with LATTICE_MPI=ON and "
                "libopenmpi-dev installed)");
#endif
}

// A single-process run (no launcher, or a build without MPI) has no peer to talk to, and its
// collectives are copies.
void Communicator::send(std::span<const float> values, int peer) const {
  LATTICE_CHECK(size_ > 1, "[distributed] send to rank ", peer, " in a single-process run");
#if LATTICE_MPI
  check_mpi(
      MPI_Send(values.data(), message_count(values.size()), MPI_FLOAT, peer, 0, MPI_COMM_WORLD),
      "MPI_Send");
#else
  (void)values;
#endif
}

void Communicator::receive(std::span<float> values, int peer) const {
  LATTICE_CHECK(size_ > 1, "[distributed] receive from rank ", peer, " in a single-process run");
#if LATTICE_MPI
  check_mpi(MPI_Recv(values.data(), message_count(values.size()), MPI_FLOAT, peer, 0,
                     MPI_COMM_WORLD, MPI_STATUS_IGNORE),
            "MPI_Recv");
#else
  (void)values;
#endif
}

void Communicator::broadcast(std::span<float> values, int root) const {
  if (size_ == 1) return;
#if LATTICE_MPI
  check_mpi(MPI_Bcast(values.data(), message_count(values.size()), MPI_FLOAT, root, MPI_COMM_WORLD),
            "MPI_Bcast");
#else
  (void)values, (void)root;
#endif
}

void Communicator::broadcast(std::span<std::byte> bytes, int root) const {
  if (size_ == 1) return;
#if LATTICE_MPI
  check_mpi(MPI_Bcast(bytes.data(), message_count(bytes.size()), MPI_BYTE, root, MPI_COMM_WORLD),
            "MPI_Bcast");
#else
  (void)bytes, (void)root;
#endif
}

void Communicator::all_gather(std::span<const double> mine, std::span<double> all) const {
  LATTICE_CHECK(all.size() == mine.size() * size_t(size_), "[distributed] all_gather of ",
                mine.size(), " values per rank needs ", mine.size() * size_t(size_), " slots, got ",
                all.size());
  if (size_ == 1) {
    std::copy(mine.begin(), mine.end(), all.begin());
    return;
  }
#if LATTICE_MPI
  check_mpi(MPI_Allgather(mine.data(), message_count(mine.size()), MPI_DOUBLE, all.data(),
                          message_count(mine.size()), MPI_DOUBLE, MPI_COMM_WORLD),
            "MPI_Allgather");
#endif
}

void Communicator::abort_run([[maybe_unused]] int status) noexcept {
#if LATTICE_MPI
  int initialized = 0, size = 1;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, status);
#endif
}

}  // namespace lattice::distributed
