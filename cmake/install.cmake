# `cmake --install build --prefix P`: the headers (P/include/lattice, so that includes keep
# their "core/...", "tensor/..." paths), the libraries, the `lattice` tool, the CMake package
# (find_package(lattice COMPONENTS cpu|cuda)) and pkg-config files.
#
# Libraries, kept simple: the static per-layer libraries (lattice::core ... lattice::distributed,
# behind lattice::lattice) with the two kernel backends as separate static libraries, of which
# the package's component picks one, so `cpu` links nothing of CUDA; and one shared
# liblattice.so of every layer with the CPU backend, linked from the same objects, which the
# pkg-config file lattice.pc names. A CUDA program links the static libraries (component cuda,
# or lattice-cuda.pc).
include(CMakePackageConfigHelpers)

set(LATTICE_LAYERS core kernels tensor ops autograd nn optim data diagnostics distributed)
set(LATTICE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/lattice)

add_library(lattice_shared SHARED)
foreach(layer ${LATTICE_LAYERS} backend_cpu)
  target_sources(lattice_shared PRIVATE $<TARGET_OBJECTS:lattice_${layer}>)
endforeach()
target_include_directories(lattice_shared PUBLIC
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/lattice>)
target_compile_features(lattice_shared PUBLIC cxx_std_20)
target_link_libraries(lattice_shared PUBLIC OpenMP::OpenMP_CXX nlohmann_json::nlohmann_json
  PRIVATE ${DNNL_LIBRARY} ZLIB::ZLIB JPEG::JPEG PNG::PNG ${SENTENCEPIECE_LIBRARY}
  ${SENTENCEPIECE_TRAIN_LIBRARY} LAPACK::LAPACK)
if(LATTICE_MPI)
  target_link_libraries(lattice_shared PRIVATE MPI::MPI_CXX)
endif()
set_target_properties(lattice_shared PROPERTIES OUTPUT_NAME lattice EXPORT_NAME shared
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})

# The headers of every layer but the CUDA backend's own (runtime.h needs the CUDA toolkit).
foreach(layer ${LATTICE_LAYERS})
  install(DIRECTORY ${layer} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lattice
          FILES_MATCHING PATTERN "*.h" PATTERN "cuda" EXCLUDE)
endforeach()

list(TRANSFORM LATTICE_LAYERS PREPEND lattice_ OUTPUT_VARIABLE LATTICE_LAYER_TARGETS)
install(TARGETS ${LATTICE_LAYER_TARGETS} lattice_backend_cpu lattice lattice_shared
        EXPORT latticeTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT latticeTargets NAMESPACE lattice:: DESTINATION ${LATTICE_CMAKE_DIR})
# The CUDA backend in its own export file: only the `cuda` component reads it (and needs
# the CUDA toolkit).
if(LATTICE_CUDA)
  install(TARGETS lattice_backend_cuda EXPORT latticeCudaTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT latticeCudaTargets NAMESPACE lattice:: DESTINATION ${LATTICE_CMAKE_DIR})
endif()
install(TARGETS lattice_tool RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

configure_package_config_file(cmake/latticeConfig.cmake.in
  ${CMAKE_BINARY_DIR}/latticeConfig.cmake INSTALL_DESTINATION ${LATTICE_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/latticeConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/latticeConfig.cmake
        ${CMAKE_BINARY_DIR}/latticeConfigVersion.cmake DESTINATION ${LATTICE_CMAKE_DIR})

# The prefix relative to the .pc file's folder, so that the installed tree can move.
file(RELATIVE_PATH LATTICE_PC_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/lattice.pc.in ${CMAKE_BINARY_DIR}/lattice.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/lattice.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
# lattice-cuda.pc: the static libraries with the CUDA backend, and what they link, by path
# (cuDNN too where the backend was built with it).
if(LATTICE_CUDA)
  list(JOIN LAPACK_LIBRARIES " " LATTICE_PC_LAPACK)
  set(LATTICE_PC_THIRD_PARTY "${DNNL_LIBRARY} ${SENTENCEPIECE_LIBRARY} \
${SENTENCEPIECE_TRAIN_LIBRARY} ${JPEG_LIBRARIES} ${PNG_LIBRARY} ${ZLIB_LIBRARY} \
${LATTICE_PC_LAPACK} -L${CUDAToolkit_LIBRARY_DIR} -Wl,-rpath,${CUDAToolkit_LIBRARY_DIR} -lcudart_static -lcublas -ldl -lrt -lpthread")
  if(LATTICE_CUDNN)  # conv2d's direct convolution (kernels/cuda/conv_direct_cuda.cu)
    get_filename_component(LATTICE_PC_CUDNN_DIR ${LATTICE_CUDNN_LIBRARY} DIRECTORY)
    string(APPEND LATTICE_PC_THIRD_PARTY
           " -L${LATTICE_PC_CUDNN_DIR} -Wl,-rpath,${LATTICE_PC_CUDNN_DIR} -lcudnn")
  endif()
  configure_file(cmake/lattice-cuda.pc.in ${CMAKE_BINARY_DIR}/lattice-cuda.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/lattice-cuda.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()
