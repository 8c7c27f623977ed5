# cmake/install.cmake - what `cmake --install` puts where (GNUInstallDirs):
#
#   bin/dkv                                   the command
#   lib/libdkv.so.0.1.0, libdkv.so.0, .so     the shared library (SONAME 0)
#   lib/libdkv.a                              the static library
#   include/dkv.h                             the one public header
#   lib/pkgconfig/dkv.pc                      pkg-config: `pkg-config --libs dkv`
#                                             (--static adds liburing, libaio)
#   lib/cmake/dkv/dkvConfig.cmake ...         find_package(dkv): dkv::dkv (shared)
#                                             and dkv::dkv_static
#
# Every installed file is relocatable: dkv.pc finds its prefix from its own
# place (${pcfiledir}), the CMake package from its own, so an install with
# `cmake --install build --prefix DIR` works in any DIR.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set_target_properties(dkv_shared PROPERTIES EXPORT_NAME dkv)
set_target_properties(dkv_static PROPERTIES EXPORT_NAME dkv_static)
target_include_directories(dkv_shared INTERFACE
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_include_directories(dkv_static INTERFACE
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

install(TARGETS dkv_shared dkv_static EXPORT dkvTargets
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/dkv.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS dkv RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# ---- pkg-config ------------------------------------------------------------------
# The static library's own dependencies go to Libs.private/Requires.private.
set(DKV_PC_REQUIRES_PRIVATE "")
set(DKV_PC_LIBS_PRIVATE "-lpthread")
if(DKV_URING_FOUND)
  set(DKV_PC_REQUIRES_PRIVATE "liburing")
endif()
if(DKV_AIO_FOUND)
  set(DKV_PC_LIBS_PRIVATE "-laio ${DKV_PC_LIBS_PRIVATE}")
endif()
file(RELATIVE_PATH DKV_PC_PREFIX_FROM_PCDIR
  "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" DKV_PC_PREFIX_FROM_PCDIR "${DKV_PC_PREFIX_FROM_PCDIR}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/dkv.pc.in
  ${PROJECT_BINARY_DIR}/dkv.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/dkv.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# ---- the CMake package -----------------------------------------------------------
set(DKV_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dkv)
install(EXPORT dkvTargets NAMESPACE dkv:: DESTINATION ${DKV_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dkvConfig.cmake.in
  ${PROJECT_BINARY_DIR}/dkvConfig.cmake
  INSTALL_DESTINATION ${DKV_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dkvConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dkvConfig.cmake
  ${PROJECT_BINARY_DIR}/dkvConfigVersion.cmake
  DESTINATION ${DKV_CMAKE_DIR})
