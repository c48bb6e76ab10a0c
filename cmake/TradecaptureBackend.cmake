# Library targets, their installation and their package metadata.
#
# Every library is a *component* of the installed package: its own export set
# (tradecapture-<component>-targets.cmake, loaded by tradecaptureConfig.cmake only when that
# component is asked for) and its own pkg-config file (tradecapture.pc for core,
# tradecapture-<component>.pc for a backend). The global property TRADECAPTURE_COMPONENTS lists
# the components built, in order (core first).

include(GNUInstallDirs)

set(TRADECAPTURE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tradecapture)
set(TRADECAPTURE_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# SONAME: libtradecapture_<c>.so.<MAJOR> once 1.0 is out; before that every minor version may
# break the ABI, so 0.x libraries carry libtradecapture_<c>.so.0.<MINOR>.
if(PROJECT_VERSION_MAJOR GREATER 0)
  set(TRADECAPTURE_SOVERSION ${PROJECT_VERSION_MAJOR})
else()
  set(TRADECAPTURE_SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
endif()

# tradecapture_install_component(<component> <target>
#     [PC_NAME name] [PC_DESCRIPTION text] [PC_REQUIRES pkg...] [PC_LIBS flag...]
#     [PC_PRIVATE_REQUIRES pkg...] [PC_PRIVATE_LIBS flag...])
# Installs <target> into its own export set, sets VERSION/SOVERSION and writes its .pc file.
# PC_PRIVATE_*: what a *static* library needs on the consumer's link line (a shared one names
# its own dependencies), so they go to Requires/Libs for a static build and to
# Requires.private/Libs.private for a shared one.
function(tradecapture_install_component component target)
  cmake_parse_arguments(ARG "" "PC_NAME;PC_DESCRIPTION"
                        "PC_REQUIRES;PC_LIBS;PC_PRIVATE_REQUIRES;PC_PRIVATE_LIBS" ${ARGN})
  set_target_properties(${target} PROPERTIES
    VERSION ${PROJECT_VERSION} SOVERSION ${TRADECAPTURE_SOVERSION})
  install(TARGETS ${target} EXPORT tradecapture-${component}-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT Development
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(EXPORT tradecapture-${component}-targets NAMESPACE tradecapture::
          FILE tradecapture-${component}-targets.cmake DESTINATION ${TRADECAPTURE_CMAKE_DIR})
  set_property(GLOBAL APPEND PROPERTY TRADECAPTURE_COMPONENTS ${component})

  # pkg-config: paths relative to the .pc file, so `cmake --install --prefix` anywhere works.
  get_target_property(type ${target} TYPE)
  get_target_property(output_name ${target} OUTPUT_NAME)
  if(NOT output_name)
    set(output_name ${target})
  endif()
  set(requires ${ARG_PC_REQUIRES})
  set(requires_private "")
  set(libs_private "")
  if(type STREQUAL "STATIC_LIBRARY")
    list(APPEND requires ${ARG_PC_PRIVATE_REQUIRES})
    set(libs_extra ${ARG_PC_LIBS} ${ARG_PC_PRIVATE_LIBS})
  else()
    set(requires_private ${ARG_PC_PRIVATE_REQUIRES})
    set(libs_private ${ARG_PC_PRIVATE_LIBS})
    set(libs_extra ${ARG_PC_LIBS})
  endif()
  if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
    message(WARNING "tradecapture: an absolute CMAKE_INSTALL_LIBDIR makes the .pc files "
                    "non-relocatable")
    set(PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
    set(PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
  else()
    file(RELATIVE_PATH up "/p/${TRADECAPTURE_PKGCONFIG_DIR}" "/p")
    string(REGEX REPLACE "/$" "" up "${up}")
    set(PC_PREFIX "\${pcfiledir}/${up}")
    set(PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  endif()
  if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
    set(PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
  else()
    set(PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
  endif()
  set(PC_NAME ${ARG_PC_NAME})
  set(PC_DESCRIPTION ${ARG_PC_DESCRIPTION})
  set(PC_VERSION ${PROJECT_VERSION})
  list(JOIN requires ", " PC_REQUIRES)
  list(JOIN requires_private ", " PC_REQUIRES_PRIVATE)
  list(JOIN libs_extra " " PC_LIBS_EXTRA)
  list(JOIN libs_private " " PC_LIBS_PRIVATE)
  set(PC_LIB "-l${output_name}")
  file(READ ${PROJECT_SOURCE_DIR}/cmake/tradecapture.pc.in pc)
  string(CONFIGURE "${pc}" pc @ONLY)
  string(REGEX REPLACE " +\n" "\n" pc "${pc}")
  string(REGEX REPLACE "\n[A-Za-z.]+:\n" "\n" pc "${pc}")  # fields left empty
  file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/pkgconfig/${ARG_PC_NAME}.pc CONTENT "${pc}"
       @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${ARG_PC_NAME}.pc
          DESTINATION ${TRADECAPTURE_PKGCONFIG_DIR})
endfunction()

# tradecapture_add_backend(NAME SOURCES src... [LIBRARIES lib...] [PRIVATE_LIBRARIES lib...]
#                          [PC_REQUIRES pkg...] [PC_PRIVATE_REQUIRES pkg...]
#                          [PC_PRIVATE_LIBS flag...])
# Defines the backend target tradecapture_<NAME> (exported as tradecapture::<NAME>, the package
# component <NAME>): its public headers live in backends/<NAME>/include, it links
# tradecapture::core, and it is installed with tradecapture-<NAME>.pc. PC_REQUIRES: pkg-config
# modules of the public LIBRARIES (their headers appear in the backend's public headers).
function(tradecapture_add_backend name)
  cmake_parse_arguments(ARG "" ""
    "SOURCES;LIBRARIES;PRIVATE_LIBRARIES;PC_REQUIRES;PC_PRIVATE_REQUIRES;PC_PRIVATE_LIBS"
    ${ARGN})
  set(target tradecapture_${name})
  add_library(${target} ${ARG_SOURCES})
  add_library(tradecapture::${name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} PUBLIC tradecapture::core ${ARG_LIBRARIES}
                                  PRIVATE ${ARG_PRIVATE_LIBRARIES})
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  tradecapture_install_component(${name} ${target}
    PC_NAME tradecapture-${name}
    PC_DESCRIPTION "tradecapture ${name} backend"
    PC_REQUIRES tradecapture ${ARG_PC_REQUIRES}
    PC_PRIVATE_REQUIRES ${ARG_PC_PRIVATE_REQUIRES}
    PC_PRIVATE_LIBS ${ARG_PC_PRIVATE_LIBS})
  install(DIRECTORY include/tradecapture DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()

# tradecapture_link_backends(<target>)
# Links <target> (a host, test or benchmark program of this project) PRIVATE with every backend
# this build has, and defines TRADECAPTURE_HAVE_<BACKEND>=1 for each (SOCI, REDIS, KAFKA,
# METRICS, HTTP), so the program's sources can `#ifdef` what is there. Kafka's programs also call
# librdkafka directly (versions, the mock cluster), so they get PkgConfig::rdkafka too.
function(tradecapture_link_backends target)
  foreach(backend soci redis kafka metrics http)
    if(TARGET tradecapture::${backend})
      string(TOUPPER ${backend} upper)
      target_link_libraries(${target} PRIVATE tradecapture::${backend})
      target_compile_definitions(${target} PRIVATE TRADECAPTURE_HAVE_${upper}=1)
    endif()
  endforeach()
  if(TARGET tradecapture::kafka)
    target_link_libraries(${target} PRIVATE PkgConfig::rdkafka)
  endif()
endfunction()
