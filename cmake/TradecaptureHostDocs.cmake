# Man pages and shell completion of the installed hosts (included from examples/CMakeLists.txt,
# after the tradecapture and tradecapture-load targets are defined).
#
# Man pages are generated at build time from each program's --help and --version by help2man
# (Debian: help2man; scripts/install-deps.sh) and installed to share/man/man1; without help2man
# they are skipped. The bash completion (packaging/bash-completion/tradecapture) is installed to
# share/bash-completion/completions, where bash-completion finds it for a prefix on XDG_DATA_DIRS.

option(TRADECAPTURE_MAN_PAGES "Generate man pages with help2man (when found)" ON)
if(TRADECAPTURE_MAN_PAGES)
  find_program(HELP2MAN_EXECUTABLE help2man)
  if(NOT HELP2MAN_EXECUTABLE)
    message(STATUS "help2man not found: no man pages (Debian: apt-get install help2man)")
  elseif(TRADECAPTURE_SANITIZE)
    # The programs run at build time; a sanitizer's exit-time report must not break the build.
    message(STATUS "sanitizer build: no man pages")
  elseif(CMAKE_CROSSCOMPILING AND NOT CMAKE_CROSSCOMPILING_EMULATOR)
    message(STATUS "cross-compiling: no man pages (help2man runs the programs)")
  else()
    set(man_dir ${CMAKE_BINARY_DIR}/man)
    set(man_pages "")
    foreach(spec IN ITEMS
        "tradecapture|partition-sequential trade capture: replay, serve, consume, query|tradecapture-load"
        "tradecapture-load|HTTP load generator for tradecapture serve|tradecapture")
      string(REPLACE "|" ";" spec "${spec}")
      list(GET spec 0 program)
      list(GET spec 1 description)
      list(GET spec 2 see_also)
      add_custom_command(
        OUTPUT ${man_dir}/${program}.1
        COMMAND ${CMAKE_COMMAND} -E make_directory ${man_dir}
        COMMAND ${CMAKE_COMMAND} -DHELP2MAN=${HELP2MAN_EXECUTABLE} -DEXE=$<TARGET_FILE:${program}>
                -DOUTPUT=${man_dir}/${program}.1 -DNAME=${description} -DSEE_ALSO=${see_also}
                -P ${PROJECT_SOURCE_DIR}/cmake/TradecaptureManPage.cmake
        DEPENDS ${program} ${PROJECT_SOURCE_DIR}/cmake/TradecaptureManPage.cmake
        COMMENT "Generating man page ${program}.1"
        VERBATIM)
      list(APPEND man_pages ${man_dir}/${program}.1)
    endforeach()
    add_custom_target(tradecapture_man_pages ALL DEPENDS ${man_pages})
    install(FILES ${man_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  endif()
endif()

install(FILES ${PROJECT_SOURCE_DIR}/packaging/bash-completion/tradecapture
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
