# The Debian package: `cpack -G DEB` in a build directory makes taskrt_VERSION-1_ARCH.deb
# from the `runtime` component (taskrtd, taskrt, taskrt-worker, the unit and its
# sysusers.d file, completions, man pages, copyright, changelog). The SDK (headers,
# libraries, CMake and pkg-config files) and the Python package are not in it: they
# stay `cmake --install` targets. tests/package/deb_test.sh builds it, runs lintian and
# runs the installed daemon.

# Man pages from --help (help2man), compressed as Debian does (gzip -9n).
find_program(TASKRT_HELP2MAN help2man)
find_program(TASKRT_GZIP gzip)
if(TASKRT_HELP2MAN AND TASKRT_GZIP AND NOT TASKRT_ASAN AND NOT TASKRT_TSAN AND NOT TASKRT_FUZZ)
  set(TASKRT_MAN_PAGES "")
  foreach(tool taskrt taskrtd)
    if(tool STREQUAL "taskrt")
      set(summary "command-line client of the taskrt task runtime")
    else()
      set(summary "taskrt task runtime daemon")
    endif()
    set(page ${CMAKE_BINARY_DIR}/man/${tool}.1)
    add_custom_command(OUTPUT ${page}.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
      COMMAND ${TASKRT_HELP2MAN} --no-info --no-discard-stderr --section=1
        --version-string=${PROJECT_VERSION} --name=${summary} --output=${page} $<TARGET_FILE:${tool}>
      COMMAND ${TASKRT_GZIP} -9nf ${page}
      DEPENDS ${tool}
      COMMENT "Writing the man page of ${tool}" VERBATIM)
    list(APPEND TASKRT_MAN_PAGES ${page}.gz)
  endforeach()
  add_custom_target(taskrt_man_pages ALL DEPENDS ${TASKRT_MAN_PAGES})
  install(FILES ${TASKRT_MAN_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT runtime)
elseif(NOT TASKRT_ASAN AND NOT TASKRT_TSAN AND NOT TASKRT_FUZZ)
  message(STATUS "help2man not found: no man pages (scripts/setup.sh installs help2man)")
endif()

# The package's documentation: its copyright and its changelog (gzip -9n).
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/deploy/changelog.Debian.gz
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/deploy
  COMMAND sh -c "gzip -9nc '${PROJECT_SOURCE_DIR}/deploy/debian/changelog' > '${CMAKE_BINARY_DIR}/deploy/changelog.Debian.gz'"
  DEPENDS ${PROJECT_SOURCE_DIR}/deploy/debian/changelog VERBATIM)
add_custom_target(taskrt_package_docs ALL DEPENDS ${CMAKE_BINARY_DIR}/deploy/changelog.Debian.gz)
install(FILES deploy/debian/copyright ${CMAKE_BINARY_DIR}/deploy/changelog.Debian.gz
  DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/taskrt COMPONENT runtime)
# What lintian may say that does not apply, each with its reason (deploy/debian/).
install(FILES deploy/debian/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides
  RENAME taskrt COMPONENT runtime)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME taskrt)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME taskrt)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "taskrt developers <taskrt-dev@lists.taskrt.org>")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps computes Depends
set(CPACK_STRIP_FILES ON)
# CPack indents every line after the first and turns an empty one into " .".
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
  "task runtime: CPU-bound work in processes, I/O-bound work on threads
taskrtd owns pools of worker processes, each with a thread pool and an async
loop. Clients submit tasks over gRPC (a unix socket, or TCP with a token and
TLS); the daemon runs CPU-bound tasks in processes and I/O-bound ones on
threads or the loop, and reports every decision with its reason and evidence.
Accepted tasks are kept in a journal and survive a crash of the daemon.

This package holds the daemon with its systemd unit and system user, the
command-line client taskrt with bash and zsh completion, and the worker. With
--http the daemon serves Prometheus metrics and a dashboard.")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/deploy/debian/postinst ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
