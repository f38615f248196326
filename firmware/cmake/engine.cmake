# tf_engine: the inference engine behind engine/engine.h.
#   TFLM_ROOT empty -> engine/engine_none.cpp (protocol-conformance build, INVOKE answers NO_ENGINE)
#   TFLM_ROOT set   -> engine/engine_tflm.cpp against the user's TFLM: headers from TFLM_ROOT, code
#                      from the prebuilt static library TFLM_LIB.
#   TINYFARM_TFLM_COMPRESSION=ON (with TFLM_ROOT) -> the engine also registers TFLM's DECODE operator
#                      and gives compressed models TF_DECOMPRESSION_BYTES of alternate decompression
#                      memory; HELLO reports the DECODE capability.
option(TINYFARM_TFLM_COMPRESSION
       "run TFLM-compressed models: register DECODE, alternate decompression memory (needs TFLM_ROOT)" OFF)
if(TFLM_ROOT STREQUAL "")
  add_library(tf_engine STATIC engine/engine_none.cpp)
  target_include_directories(tf_engine PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(tf_engine PRIVATE ${TF_WARNINGS})
  message(STATUS "engine: none (protocol-conformance build; set -DTFLM_ROOT=... for TFLM)")
  if(TINYFARM_TFLM_COMPRESSION)
    message(STATUS "TINYFARM_TFLM_COMPRESSION ignored: there is no engine without TFLM_ROOT")
  endif()
  return()
endif()

get_filename_component(TFLM_ROOT "${TFLM_ROOT}" ABSOLUTE)
if(NOT EXISTS "${TFLM_ROOT}/tensorflow/lite/micro/micro_interpreter.h")
  message(FATAL_ERROR "TFLM_ROOT=${TFLM_ROOT} is not a TFLite Micro tree: "
                      "tensorflow/lite/micro/micro_interpreter.h is missing (see README.md)")
endif()
# Headers TFLM needs from its third-party dependencies, wherever the tree keeps them.
set(_tflm_includes ${TFLM_ROOT})
foreach(dep flatbuffers/include gemmlowp ruy kissfft)
  foreach(base third_party tensorflow/lite/micro/tools/make/downloads)
    if(EXISTS "${TFLM_ROOT}/${base}/${dep}")
      list(APPEND _tflm_includes "${TFLM_ROOT}/${base}/${dep}")
    endif()
  endforeach()
endforeach()
# TFLM's code comes from a static library the user built for this core with TFLM's own build
# (tinyfarm never compiles TFLM: see README.md). Its headers come from TFLM_ROOT.
if(TFLM_LIB STREQUAL "")
  message(FATAL_ERROR "TFLM_ROOT is set but TFLM_LIB is not: pass -DTFLM_LIB=/path/to/the static "
                      "TFLM library built for this core (e.g. libtensorflow-microlite.a; see README.md)")
endif()
get_filename_component(TFLM_LIB "${TFLM_LIB}" ABSOLUTE)
if(NOT EXISTS "${TFLM_LIB}")
  message(FATAL_ERROR "TFLM_LIB=${TFLM_LIB} does not exist")
endif()
add_library(tflm STATIC IMPORTED)
set_target_properties(tflm PROPERTIES IMPORTED_LOCATION "${TFLM_LIB}")
target_include_directories(tflm SYSTEM INTERFACE ${_tflm_includes})
# The library must have been built with the same definitions (TFLM's defaults for Cortex-M).
target_compile_definitions(tflm INTERFACE TF_LITE_STATIC_MEMORY TF_LITE_DISABLE_X86_NEON
                           TF_LITE_MCU_DEBUG_LOG FLATBUFFERS_LOCALE_INDEPENDENT=0)

# What the library holds, read from its symbols: a library built with USE_TFLM_COMPRESSION (TFLM's
# older in-kernel weight compression) has other class layouts, so its headers need the define too;
# the DECODE operator (tflite::Register_DECODE) is in every TFLM library since October 2025.
set(_tflm_symbols "")
if(CMAKE_NM)
  execute_process(COMMAND ${CMAKE_NM} -C ${TFLM_LIB} OUTPUT_VARIABLE _tflm_symbols ERROR_QUIET
                  RESULT_VARIABLE _nm_failed)
  if(_nm_failed)
    set(_tflm_symbols "")
  endif()
endif()
if(_tflm_symbols MATCHES "AllocateCompressedTensorsList")
  target_compile_definitions(tflm INTERFACE USE_TFLM_COMPRESSION)
  message(STATUS "engine: TFLM_LIB was built with USE_TFLM_COMPRESSION; its headers get the define")
endif()
set(_decode 0)
if(TINYFARM_TFLM_COMPRESSION)
  if(NOT EXISTS "${TFLM_ROOT}/tensorflow/lite/micro/kernels/decode.cc")
    message(FATAL_ERROR "TINYFARM_TFLM_COMPRESSION needs a TFLM with the DECODE operator (October "
                        "2025 or later): ${TFLM_ROOT}/tensorflow/lite/micro/kernels/decode.cc is missing")
  endif()
  if(NOT _tflm_symbols STREQUAL "" AND NOT _tflm_symbols MATCHES "Register_DECODE")
    message(FATAL_ERROR "TINYFARM_TFLM_COMPRESSION: TFLM_LIB=${TFLM_LIB} has no DECODE kernel "
                        "(tflite::Register_DECODE); rebuild it from the tree in TFLM_ROOT")
  endif()
  set(_decode 1)
endif()

# HELLO's tflm_version: the tree's git revision when it has one.
set(_tflm_version "tflite-micro")
execute_process(COMMAND git -C ${TFLM_ROOT} describe --always --dirty OUTPUT_VARIABLE _rev
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _git_failed)
if(NOT _git_failed AND NOT _rev STREQUAL "")
  set(_tflm_version "tflite-micro ${_rev}")
endif()

add_library(tf_engine STATIC engine/engine_tflm.cpp engine/tflm_platform.cpp)
target_compile_definitions(tf_engine PRIVATE TF_TFLM_VERSION="${_tflm_version}" TF_TFLM_COMPRESSION=${_decode})
target_include_directories(tf_engine PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(tf_engine PUBLIC tflm)
target_compile_options(tf_engine PRIVATE ${TF_WARNINGS})
message(STATUS "engine: TFLM headers from ${TFLM_ROOT}, library ${TFLM_LIB}, arena ${TF_ARENA_BYTES} B")
if(_decode)
  message(STATUS "engine: DECODE registered (compressed models), decompression memory "
                 "${TF_DECOMPRESSION_BYTES} B")
endif()
