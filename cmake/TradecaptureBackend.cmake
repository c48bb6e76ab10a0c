# tradecapture_add_backend(NAME SOURCES src... [LIBRARIES lib...])
# Defines the backend target tradecapture_<NAME> (exported as tradecapture::<NAME>): its public
# headers live in backends/<NAME>/include, it links tradecapture::core, and it is installed.
function(tradecapture_add_backend name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES;PRIVATE_LIBRARIES" ${ARGN})
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
  install(TARGETS ${target} EXPORT tradecaptureTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY include/tradecapture DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()
