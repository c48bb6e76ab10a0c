# FindSOCI
# --------
# Finds SOCI (https://soci.sourceforge.net/) when it is installed without a CMake package config,
# as Debian's libsoci-dev is. Installed next to tradecapture's package config, so it must not
# refer to anything in the source tree.
#
# Components (each a backend): sqlite3, postgresql, mysql, odbc, firebird, oracle, db2.
# The core library is always searched.
#
# Imported targets:
#   SOCI::core          the core library and the include directory
#   SOCI::<component>   one backend; links SOCI::core (and, for postgresql, carries libpq:
#                       its include directory, which soci-postgresql.h needs, and the library,
#                       for code that calls libpq on a session's connection)
#
# Result variables:
#   SOCI_FOUND, SOCI_INCLUDE_DIRS, SOCI_LIBRARIES (core and the components found),
#   SOCI_VERSION (major.minor.patch, from soci/version.h), SOCI_<component>_FOUND
#
# Cache variables: SOCI_INCLUDE_DIR, SOCI_CORE_LIBRARY, SOCI_<component>_LIBRARY.
# Hints: SOCI_ROOT (prefix of an installation).

include(FindPackageHandleStandardArgs)

find_path(SOCI_INCLUDE_DIR NAMES soci/soci.h soci/version.h)

# The libraries are named soci_<name>, or soci_<name>_<major>_<minor> on some platforms.
set(_soci_suffixes "")
if(SOCI_INCLUDE_DIR AND EXISTS "${SOCI_INCLUDE_DIR}/soci/version.h")
  file(STRINGS "${SOCI_INCLUDE_DIR}/soci/version.h" _soci_version_line
       REGEX "^#define[ \t]+SOCI_VERSION[ \t]+[0-9]+")
  if(_soci_version_line MATCHES "SOCI_VERSION[ \t]+([0-9]+)")
    set(_soci_v "${CMAKE_MATCH_1}")
    math(EXPR _soci_major "${_soci_v} / 100000")
    math(EXPR _soci_minor "${_soci_v} / 100 % 1000")
    math(EXPR _soci_patch "${_soci_v} % 100")
    set(SOCI_VERSION "${_soci_major}.${_soci_minor}.${_soci_patch}")
    set(_soci_suffixes "_${_soci_major}_${_soci_minor}")
  endif()
  unset(_soci_version_line)
  unset(_soci_v)
endif()

find_library(SOCI_CORE_LIBRARY NAMES soci_core soci_core${_soci_suffixes})
mark_as_advanced(SOCI_INCLUDE_DIR SOCI_CORE_LIBRARY)

set(SOCI_LIBRARIES "")
foreach(_soci_comp IN LISTS SOCI_FIND_COMPONENTS)
  find_library(SOCI_${_soci_comp}_LIBRARY
               NAMES soci_${_soci_comp} soci_${_soci_comp}${_soci_suffixes})
  mark_as_advanced(SOCI_${_soci_comp}_LIBRARY)
  set(SOCI_${_soci_comp}_FOUND FALSE)
  if(SOCI_${_soci_comp}_LIBRARY AND SOCI_CORE_LIBRARY)
    set(SOCI_${_soci_comp}_FOUND TRUE)
  endif()
endforeach()

# soci-postgresql.h includes <libpq-fe.h>, which Debian keeps in /usr/include/postgresql.
if("postgresql" IN_LIST SOCI_FIND_COMPONENTS AND SOCI_postgresql_FOUND)
  find_path(SOCI_PQ_INCLUDE_DIR NAMES libpq-fe.h PATH_SUFFIXES postgresql pgsql)
  mark_as_advanced(SOCI_PQ_INCLUDE_DIR)
  if(NOT SOCI_PQ_INCLUDE_DIR)
    set(SOCI_postgresql_FOUND FALSE)
  endif()
endif()

find_package_handle_standard_args(SOCI
  REQUIRED_VARS SOCI_CORE_LIBRARY SOCI_INCLUDE_DIR
  VERSION_VAR SOCI_VERSION
  HANDLE_COMPONENTS)

if(SOCI_FOUND)
  set(SOCI_INCLUDE_DIRS "${SOCI_INCLUDE_DIR}")
  list(APPEND SOCI_LIBRARIES "${SOCI_CORE_LIBRARY}")
  if(NOT TARGET SOCI::core)
    add_library(SOCI::core UNKNOWN IMPORTED)
    set_target_properties(SOCI::core PROPERTIES
      IMPORTED_LOCATION "${SOCI_CORE_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${SOCI_INCLUDE_DIR}")
    # A static core loads backends dynamically and uses threads.
    if(SOCI_CORE_LIBRARY MATCHES "\\${CMAKE_STATIC_LIBRARY_SUFFIX}$")
      find_package(Threads QUIET)
      set_property(TARGET SOCI::core APPEND PROPERTY
        INTERFACE_LINK_LIBRARIES ${CMAKE_DL_LIBS} $<TARGET_NAME_IF_EXISTS:Threads::Threads>)
    endif()
  endif()
  foreach(_soci_comp IN LISTS SOCI_FIND_COMPONENTS)
    if(NOT SOCI_${_soci_comp}_FOUND)
      continue()
    endif()
    list(APPEND SOCI_LIBRARIES "${SOCI_${_soci_comp}_LIBRARY}")
    if(NOT TARGET SOCI::${_soci_comp})
      add_library(SOCI::${_soci_comp} UNKNOWN IMPORTED)
      set_target_properties(SOCI::${_soci_comp} PROPERTIES
        IMPORTED_LOCATION "${SOCI_${_soci_comp}_LIBRARY}"
        INTERFACE_LINK_LIBRARIES SOCI::core)
      if(_soci_comp STREQUAL "postgresql")
        # Its header is libpq's API too (the session backend holds a PGconn*): code using it
        # (COPY on a SOCI session's connection, say) calls libpq, so libpq comes with it, static
        # or shared.
        find_package(PostgreSQL QUIET)
        set_property(TARGET SOCI::postgresql APPEND PROPERTY
          INTERFACE_INCLUDE_DIRECTORIES "${SOCI_PQ_INCLUDE_DIR}")
        set_property(TARGET SOCI::postgresql APPEND PROPERTY
          INTERFACE_LINK_LIBRARIES $<TARGET_NAME_IF_EXISTS:PostgreSQL::PostgreSQL>)
      endif()
      # A static backend needs its client library on the link line (a shared one names it).
      if(SOCI_${_soci_comp}_LIBRARY MATCHES "\\${CMAKE_STATIC_LIBRARY_SUFFIX}$")
        if(_soci_comp STREQUAL "sqlite3")
          find_package(SQLite3 QUIET)
          set_property(TARGET SOCI::sqlite3 APPEND PROPERTY
            INTERFACE_LINK_LIBRARIES $<TARGET_NAME_IF_EXISTS:SQLite::SQLite3>)
        endif()
      endif()
    endif()
  endforeach()
endif()
unset(_soci_comp)
unset(_soci_suffixes)
unset(_soci_major)
unset(_soci_minor)
unset(_soci_patch)
