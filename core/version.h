// The library's version (CMake's project version) and the git commit it was built from, for
// `lattice --version`, the trainers' --version and their summary.json.
#pragma once

namespace lattice {

/// "major.minor.patch", e.g. "0.2.0".
const char* version();
/// The short hash of the commit built (`git rev-parse --short HEAD` at build time), or
/// "unknown" when the sources were not a git checkout.
const char* git_commit();

}  // namespace lattice
