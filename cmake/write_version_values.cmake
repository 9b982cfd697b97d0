# Run at build time by cmake/version.cmake (cmake -P): writes OUTPUT from VERSION and the
# short commit of SOURCE_DIR ("unknown" without git or outside a checkout); configure_file
# leaves the file untouched when nothing changed.
set(LATTICE_GIT_COMMIT unknown)
if(GIT)
  execute_process(COMMAND ${GIT} rev-parse --short HEAD WORKING_DIRECTORY ${SOURCE_DIR}
                  OUTPUT_VARIABLE commit RESULT_VARIABLE status
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(status EQUAL 0 AND commit)
    set(LATTICE_GIT_COMMIT ${commit})
  endif()
endif()
set(LATTICE_VERSION ${VERSION})
configure_file(${CMAKE_CURRENT_LIST_DIR}/lattice_version_values.h.in ${OUTPUT} @ONLY)
