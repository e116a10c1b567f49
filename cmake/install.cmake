# The installed product: libp2prpc.a (every folder's objects), the public headers
# under include/p2prpc/, the p2prpc program, a pkg-config file and a CMake package.

set(P2P_LIBRARY_PARTS p2p_common)
foreach(part broker worker client codegen)
    get_target_property(kind p2p_${part} TYPE)
    if(kind STREQUAL "OBJECT_LIBRARY")
        list(APPEND P2P_LIBRARY_PARTS p2p_${part})
    endif()
endforeach()

set(P2P_LIBRARY_OBJECTS)
foreach(part ${P2P_LIBRARY_PARTS})
    list(APPEND P2P_LIBRARY_OBJECTS $<TARGET_OBJECTS:${part}>)
endforeach()

add_library(p2prpc STATIC ${P2P_LIBRARY_OBJECTS})
add_library(p2prpc::p2prpc ALIAS p2prpc)
target_include_directories(p2prpc INTERFACE
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
foreach(part ${P2P_LIBRARY_PARTS})
    target_include_directories(p2prpc INTERFACE
        $<BUILD_INTERFACE:$<TARGET_PROPERTY:${part},INTERFACE_INCLUDE_DIRECTORIES>>)
endforeach()
target_link_libraries(p2prpc INTERFACE
    PkgConfig::MHD PkgConfig::CURL PkgConfig::JANSSON PkgConfig::SQLITE
    PkgConfig::OPENSSL PkgConfig::UUID PkgConfig::MONGOC Threads::Threads)

get_property(P2P_PUBLIC_HEADERS GLOBAL PROPERTY P2P_PUBLIC_HEADERS)
install(FILES ${P2P_PUBLIC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/p2prpc)
install(TARGETS p2prpc EXPORT p2prpcTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT p2prpcTargets NAMESPACE p2prpc::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/p2prpc)

include(CMakePackageConfigHelpers)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/p2prpcConfig.cmake.in
    ${PROJECT_BINARY_DIR}/p2prpcConfig.cmake
    INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/p2prpc)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/p2prpcConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/p2prpcConfig.cmake
              ${PROJECT_BINARY_DIR}/p2prpcConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/p2prpc)

configure_file(${PROJECT_SOURCE_DIR}/cmake/p2prpc.pc.in ${PROJECT_BINARY_DIR}/p2prpc.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/p2prpc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
