// The version and git commit compiled in from the header the build writes (cmake/version.cmake).
#include "core/version.h"

#include "lattice_version_values.h"

namespace lattice {

const char* version() {
  return LATTICE_VERSION_STRING;
}

const char* git_commit() {
  return LATTICE_GIT_COMMIT_STRING;
}

}  // namespace lattice
