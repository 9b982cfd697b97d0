# The version values core/version.cpp compiles in: the project version and the commit that
# `git rev-parse --short HEAD` names, rewritten at every build (only when they change, so a
# build at the same commit recompiles nothing) so that a new commit never leaves a stale one.
find_package(Git QUIET)
set(LATTICE_VERSION_VALUES ${CMAKE_BINARY_DIR}/generated/lattice_version_values.h)
add_custom_target(lattice_version_values
  COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${CMAKE_SOURCE_DIR} -DGIT=${GIT_EXECUTABLE}
          -DVERSION=${PROJECT_VERSION} -DOUTPUT=${LATTICE_VERSION_VALUES}
          -P ${CMAKE_CURRENT_LIST_DIR}/write_version_values.cmake
  BYPRODUCTS ${LATTICE_VERSION_VALUES}
  VERBATIM)
add_dependencies(lattice_core lattice_version_values)
target_include_directories(lattice_core PRIVATE ${CMAKE_BINARY_DIR}/generated)
