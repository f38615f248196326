# tf_engine: the inference engine behind engine/engine.h.
#   TFLM_ROOT empty -> engine/engine_none.cpp (protocol-conformance build, INVOKE answers NO_ENGINE;
#                      HELLO's kernels "none")
#   TFLM_ROOT set   -> engine/engine_tflm.cpp against the user's TFLM, headers from TFLM_ROOT, and
#                      TFLM's code either compiled here from TFLM_ROOT (TFLM_LIB empty: the
#                      `tflm` target below, with this preset's CPU flags and the kernels of
#                      TINYFARM_TFLM_KERNELS) or taken from a prebuilt static library (TFLM_LIB).
#   TINYFARM_TFLM_KERNELS=reference|cmsis-nn -> which kernel library TFLM's operators use; HELLO
#                      names it (outputs and ticks depend on it). cmsis-nn needs CMSIS and CMSIS-NN.
#   TFLM_ROOT/signal present -> the signal library's custom ops (SignalWindow, SignalRfft, ...) are
#                      registered (TF_TFLM_SIGNAL=1) and, when compiling TFLM here, signal/micro/kernels/*.cc,
#                      signal/src/*.cc and signal/src/kiss_fft_wrappers/*.cc are compiled (kissfft
#                      from TFLM's downloads); with TFLM_LIB, when its symbols have tflm_signal::Register_*.
#   TINYFARM_TFLM_COMPRESSION=ON (with TFLM_ROOT) -> the engine also registers TFLM's DECODE operator
#                      and gives compressed models TF_DECOMPRESSION_BYTES of alternate decompression
#                      memory; HELLO reports the DECODE capability.
#   TINYFARM_TENSOR_DEBUG=ON (with TFLM_ROOT) -> HELLO reports the TENSORS capability: after
#                      PRESERVE_TENSORS the engine loads models with TFLM's preserve_all_tensors and
#                      READ_TENSOR reads any tensor after INVOKE (`tinyfarm diff MODEL --device`).
set(TINYFARM_TFLM_KERNELS "reference" CACHE STRING
    "TFLM kernel library: reference | cmsis-nn (with TFLM_ROOT; must match TFLM_LIB when that is given)")
set_property(CACHE TINYFARM_TFLM_KERNELS PROPERTY STRINGS reference cmsis-nn)
set(TINYFARM_TFLM_OPS "" CACHE STRING
    "op resolver contents, e.g. Conv2D;FullyConnected;Softmax (names of MicroMutableOpResolver's Add<Op>()); empty = every op of engine_tflm.cpp's TF_ENGINE_OPS")
set(TFLM_DOWNLOADS "" CACHE PATH
    "TFLM's third-party downloads: flatbuffers/ gemmlowp/ ruy/ (+ cmsis/ cmsis_nn/); empty = TFLM_ROOT/tensorflow/lite/micro/tools/make/downloads")
set(CMSIS_ROOT "" CACHE PATH "CMSIS (CMSIS_5/CMSIS_6) tree for cmsis-nn kernels; empty = TFLM_DOWNLOADS/cmsis")
set(CMSIS_NN_ROOT "" CACHE PATH "CMSIS-NN tree for cmsis-nn kernels; empty = TFLM_DOWNLOADS/cmsis_nn")
option(TINYFARM_TENSOR_DEBUG
       "intermediate tensors: PRESERVE_TENSORS/READ_TENSOR, TENSORS capability (needs TFLM_ROOT)" OFF)
option(TINYFARM_TFLM_COMPRESSION
       "run TFLM-compressed models: register DECODE, alternate decompression memory (needs TFLM_ROOT)" OFF)
option(TINYFARM_REQUIRE_TFLM
       "the *-tflm presets: stop when no TFLM tree is found instead of building the engine-less firmware" OFF)
if(TFLM_ROOT STREQUAL "" AND TINYFARM_REQUIRE_TFLM)
  # Found without configuration: $TFLM_ROOT (the presets pass it), else ../shared/tflm beside the
  # checkout (device_harness/dependencies.py applies the same rule for tinyfarm's own builds).
  get_filename_component(_shared_tflm "${CMAKE_SOURCE_DIR}/../../shared/tflm" ABSOLUTE)
  if(EXISTS "${_shared_tflm}/tensorflow/lite/micro/micro_interpreter.h")
    set(TFLM_ROOT "${_shared_tflm}" CACHE PATH "a TensorFlow Lite Micro source tree" FORCE)
  else()
    message(FATAL_ERROR "this preset builds TFLM: set TFLM_ROOT=/path/to/tflite-micro (or -DTFLM_ROOT=...); "
                        "${_shared_tflm} does not exist either (see README.md)")
  endif()
endif()
if(TFLM_ROOT STREQUAL "")
  add_library(tf_engine STATIC engine/engine_none.cpp)
  target_include_directories(tf_engine PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(tf_engine PRIVATE ${TF_WARNINGS})
  message(STATUS "engine: none (protocol-conformance build; set -DTFLM_ROOT=... for TFLM)")
  if(TINYFARM_TFLM_COMPRESSION)
    message(STATUS "TINYFARM_TFLM_COMPRESSION ignored: there is no engine without TFLM_ROOT")
  endif()
  if(TINYFARM_TENSOR_DEBUG)
    message(STATUS "TINYFARM_TENSOR_DEBUG ignored: there is no engine without TFLM_ROOT")
  endif()
  return()
endif()

get_filename_component(TFLM_ROOT "${TFLM_ROOT}" ABSOLUTE)
if(NOT EXISTS "${TFLM_ROOT}/tensorflow/lite/micro/micro_interpreter.h")
  message(FATAL_ERROR "TFLM_ROOT=${TFLM_ROOT} is not a TFLite Micro tree: "
                      "tensorflow/lite/micro/micro_interpreter.h is missing (see README.md)")
endif()
if(NOT TINYFARM_TFLM_KERNELS MATCHES "^(reference|cmsis-nn)$")
  message(FATAL_ERROR "TINYFARM_TFLM_KERNELS=${TINYFARM_TFLM_KERNELS}: use reference or cmsis-nn")
endif()
if(TFLM_DOWNLOADS STREQUAL "")
  set(_tflm_downloads "${TFLM_ROOT}/tensorflow/lite/micro/tools/make/downloads")
else()
  get_filename_component(_tflm_downloads "${TFLM_DOWNLOADS}" ABSOLUTE)
endif()
# Headers TFLM needs from its third-party dependencies, wherever the tree keeps them.
set(_tflm_includes ${TFLM_ROOT})
foreach(dep flatbuffers/include gemmlowp ruy kissfft)  # kissfft: the signal library's FFTs
  foreach(base "${TFLM_ROOT}/third_party" "${_tflm_downloads}")
    if(EXISTS "${base}/${dep}")
      list(APPEND _tflm_includes "${base}/${dep}")
    endif()
  endforeach()
endforeach()
# The definitions TFLM is built with for Cortex-M; the headers need the same ones.
set(_tflm_definitions TF_LITE_STATIC_MEMORY TF_LITE_DISABLE_X86_NEON TF_LITE_MCU_DEBUG_LOG
    FLATBUFFERS_LOCALE_INDEPENDENT=0)

# The signal library (audio front-end custom ops) lives beside tensorflow/ in TFLM trees since 2023.
set(_tflm_signal 0)
if(EXISTS "${TFLM_ROOT}/signal/micro/kernels")
  set(_tflm_signal 1)
endif()

if(TFLM_LIB STREQUAL "")
  # ---- compile TFLM here: the `microlite` sources of TFLM's tools/make/sources.inc ----
  foreach(need flatbuffers/flatbuffers.h fixedpoint/fixedpoint.h ruy/profiler/instrumentation.h)
    string(MAKE_C_IDENTIFIER "_found_${need}" _var)
    find_file(${_var} ${need} PATHS ${_tflm_includes} NO_DEFAULT_PATH NO_CACHE)
    if(NOT ${_var})
      message(FATAL_ERROR "compiling TFLM from TFLM_ROOT needs ${need} (flatbuffers, gemmlowp, ruy "
                          "headers: TFLM's downloads); none under ${_tflm_includes}. Run TFLM's "
                          "`make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads` "
                          "or point -DTFLM_DOWNLOADS=... at a directory with flatbuffers/ gemmlowp/ ruy/ "
                          "(see README.md), or give a prebuilt -DTFLM_LIB=...")
    endif()
  endforeach()
  set(_t "${TFLM_ROOT}/tensorflow")
  file(GLOB _tflm_sources
       "${_t}/lite/micro/*.cc" "${_t}/lite/micro/arena_allocator/*.cc"
       "${_t}/lite/micro/memory_planner/*.cc" "${_t}/lite/micro/tflite_bridge/*.cc"
       "${_t}/lite/micro/kernels/*.cc")
  # TFL_CC_SRCS: tensorflow/ outside lite/micro and lite/experimental
  file(GLOB_RECURSE _tfl_sources RELATIVE "${_t}" "${_t}/*.cc" "${_t}/*.c")
  list(FILTER _tfl_sources EXCLUDE REGEX "^lite/(micro|experimental)/")
  list(TRANSFORM _tfl_sources PREPEND "${_t}/")
  list(APPEND _tflm_sources ${_tfl_sources})
  # tests and their helpers; lite/array.cc (not with TF_LITE_STATIC_MEMORY); debug_log.cc
  # (engine/tflm_platform.cpp is the firmware's DebugLog)
  # the signal library (TFLM's sources.inc MICROLITE_CC_SIGNAL_KERNEL_SRCS and additional_kernels.inc):
  # its kernels, its DSP sources and the kissfft wrappers, which #include kissfft's kiss_fft.c
  if(_tflm_signal)
    file(GLOB _signal_sources "${TFLM_ROOT}/signal/micro/kernels/*.cc" "${TFLM_ROOT}/signal/src/*.cc"
         "${TFLM_ROOT}/signal/src/kiss_fft_wrappers/*.cc")
    list(APPEND _tflm_sources ${_signal_sources})
    find_file(_found_kiss_fft kiss_fft.c PATHS ${_tflm_includes} NO_DEFAULT_PATH NO_CACHE)
    if(NOT _found_kiss_fft)
      message(FATAL_ERROR "TFLM_ROOT has the signal library (${TFLM_ROOT}/signal), whose FFTs need kissfft "
                          "(kiss_fft.c, tools/kiss_fftr.c: v130 with TFLM's third_party/kissfft/kissfft.patch, "
                          "as TFLM's kissfft_download.sh lays it out) in ${_tflm_downloads}/kissfft or "
                          "${TFLM_ROOT}/third_party/kissfft (see README.md)")
    endif()
  endif()
  list(FILTER _tflm_sources EXCLUDE REGEX
       "(_test\\.cc|_test_common\\.cc|_generated_data\\.cc|/test_helpers\\.cc|/test_helper_custom_ops\\.cc|/mock_micro_graph\\.cc|/lite/array\\.cc|/lite/micro/debug_log\\.cc)$")
  set(_tflm_kernel_definitions)
  if(TINYFARM_TFLM_KERNELS STREQUAL "cmsis-nn")
    set(_cmsis "${CMSIS_ROOT}")
    set(_cmsis_nn "${CMSIS_NN_ROOT}")
    if(_cmsis STREQUAL "")
      set(_cmsis "${_tflm_downloads}/cmsis")
    endif()
    if(_cmsis_nn STREQUAL "")
      set(_cmsis_nn "${_tflm_downloads}/cmsis_nn")
    endif()
    if(NOT EXISTS "${_cmsis}/CMSIS/Core/Include/cmsis_compiler.h" OR NOT EXISTS "${_cmsis_nn}/Include/arm_nnfunctions.h")
      message(FATAL_ERROR "TINYFARM_TFLM_KERNELS=cmsis-nn needs CMSIS (${_cmsis}/CMSIS/Core/Include) and "
                          "CMSIS-NN (${_cmsis_nn}/Include): set -DCMSIS_ROOT=... -DCMSIS_NN_ROOT=... (README.md)")
    endif()
    # TFLM's CMSIS-NN kernels replace the reference kernels of the same name
    file(GLOB _cmsis_kernels "${_t}/lite/micro/kernels/cmsis_nn/*.cc")
    foreach(k ${_cmsis_kernels})
      get_filename_component(_name "${k}" NAME)
      list(REMOVE_ITEM _tflm_sources "${_t}/lite/micro/kernels/${_name}")
    endforeach()
    file(GLOB_RECURSE _cmsis_nn_sources "${_cmsis_nn}/Source/*.c")
    list(FILTER _cmsis_nn_sources EXCLUDE REGEX "(_f16\\.c|_f32\\.c|/arm_nntables_flt\\.c)$")
    list(APPEND _tflm_sources ${_cmsis_kernels} ${_cmsis_nn_sources})
    list(APPEND _tflm_includes "${_cmsis}" "${_cmsis_nn}" "${_cmsis}/CMSIS/Core/Include" "${_cmsis_nn}/Include")
    set(_tflm_kernel_definitions CMSIS_NN ARM_NN_ENABLE_F16=0 ARM_NN_ENABLE_F32=0)
  endif()
  list(LENGTH _tflm_sources _n)
  add_library(tflm STATIC ${_tflm_sources})
  target_include_directories(tflm SYSTEM PUBLIC ${_tflm_includes})
  target_compile_definitions(tflm PUBLIC ${_tflm_definitions} ${_tflm_kernel_definitions})
  # TFLM's default for its kernels (tools/make/Makefile: OPTIMIZED_KERNELS_FOR ... SPEED)
  target_compile_definitions(tflm PRIVATE KERNELS_OPTIMIZED_FOR_SPEED)
  target_compile_options(tflm PRIVATE -w $<$<COMPILE_LANGUAGE:C>:-std=c17>)
  set(_tflm_what "${_n} TFLM sources compiled from ${TFLM_ROOT} (${TINYFARM_TFLM_KERNELS} kernels)")
  set(_tflm_symbols "")
else()
  # ---- a prebuilt static library from TFLM's own build ----
  get_filename_component(TFLM_LIB "${TFLM_LIB}" ABSOLUTE)
  if(NOT EXISTS "${TFLM_LIB}")
    message(FATAL_ERROR "TFLM_LIB=${TFLM_LIB} does not exist")
  endif()
  add_library(tflm STATIC IMPORTED)
  set_target_properties(tflm PROPERTIES IMPORTED_LOCATION "${TFLM_LIB}")
  target_include_directories(tflm SYSTEM INTERFACE ${_tflm_includes})
  # The library must have been built with the same definitions (TFLM's defaults for Cortex-M).
  target_compile_definitions(tflm INTERFACE ${_tflm_definitions})
  set(_tflm_what "library ${TFLM_LIB}")
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
  if(NOT _tflm_symbols STREQUAL "" AND NOT _tflm_symbols MATCHES "tflm_signal::Register_WINDOW")
    set(_tflm_signal 0)  # a library without the signal kernels: register none of them
  endif()
  if(_tflm_symbols MATCHES "AllocateCompressedTensorsList")
    target_compile_definitions(tflm INTERFACE USE_TFLM_COMPRESSION)
    message(STATUS "engine: TFLM_LIB was built with USE_TFLM_COMPRESSION; its headers get the define")
  endif()
  # The kernels HELLO names must be the library's: CMSIS-NN kernels call arm_* functions.
  if(NOT _tflm_symbols STREQUAL "")
    if(_tflm_symbols MATCHES "arm_convolve_s8|arm_fully_connected_s8")
      set(_lib_kernels "cmsis-nn")
    else()
      set(_lib_kernels "reference")
    endif()
    if(NOT _lib_kernels STREQUAL TINYFARM_TFLM_KERNELS)
      message(FATAL_ERROR "TFLM_LIB=${TFLM_LIB} has ${_lib_kernels} kernels but TINYFARM_TFLM_KERNELS="
                          "${TINYFARM_TFLM_KERNELS}: pass -DTINYFARM_TFLM_KERNELS=${_lib_kernels}")
    endif()
  endif()
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

# HELLO's tflm_version: the tree's own git revision when TFLM_ROOT is the top of a git checkout (not
# merely inside some other repository), else the TFLM commit a prepared offline tree records in its
# TREE.md (prepare-tflm-tree.sh), else plain "tflite-micro".
set(_tflm_version "tflite-micro")
execute_process(COMMAND git -C ${TFLM_ROOT} rev-parse --show-toplevel OUTPUT_VARIABLE _top
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _git_failed)
if(NOT _git_failed)
  get_filename_component(_top "${_top}" REALPATH)
  get_filename_component(_root_real "${TFLM_ROOT}" REALPATH)
endif()
if(NOT _git_failed AND _top STREQUAL _root_real)
  execute_process(COMMAND git -C ${TFLM_ROOT} describe --always --dirty OUTPUT_VARIABLE _rev
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT _rev STREQUAL "")
    set(_tflm_version "tflite-micro ${_rev}")
  endif()
elseif(EXISTS "${TFLM_ROOT}/TREE.md")
  file(STRINGS "${TFLM_ROOT}/TREE.md" _tree_line REGEX "^\\| TFLM \\|.*`[0-9a-f]+`" LIMIT_COUNT 1)
  if(_tree_line MATCHES "`([0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])[0-9a-f]*`")
    set(_tflm_version "tflite-micro ${CMAKE_MATCH_1}")
  endif()
endif()

add_library(tf_engine STATIC engine/engine_tflm.cpp engine/tflm_platform.cpp)
if(NOT TINYFARM_TFLM_OPS STREQUAL "")
  # a smaller op list for a part whose flash cannot hold every kernel: TF_OP(Conv2D) TF_OP(FullyConnected) ...
  set(_ops "")
  foreach(op ${TINYFARM_TFLM_OPS})
    if(NOT op MATCHES "^[A-Za-z0-9]+$")
      message(FATAL_ERROR "TINYFARM_TFLM_OPS: '${op}' is not an op name (Conv2D, FullyConnected, Svdf, ...)")
    endif()
    string(APPEND _ops " TF_OP(${op})")
  endforeach()
  target_compile_definitions(tf_engine PRIVATE "TF_ENGINE_OPS=${_ops}")
  message(STATUS "engine: op resolver limited to TINYFARM_TFLM_OPS:${_ops}")
endif()
target_compile_definitions(tf_engine PRIVATE TF_TFLM_VERSION="${_tflm_version}" TF_TFLM_COMPRESSION=${_decode}
                           TF_TENSOR_DEBUG=$<BOOL:${TINYFARM_TENSOR_DEBUG}> TF_TFLM_SIGNAL=${_tflm_signal}
                           TF_TFLM_KERNELS="${TINYFARM_TFLM_KERNELS}")
target_include_directories(tf_engine PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(tf_engine PUBLIC tflm)
target_compile_options(tf_engine PRIVATE ${TF_WARNINGS})
message(STATUS "engine: TFLM headers from ${TFLM_ROOT}, ${_tflm_what}, ${TINYFARM_TFLM_KERNELS} "
               "kernels, arena ${TF_ARENA_BYTES} B")
if(_tflm_signal AND TINYFARM_TFLM_OPS STREQUAL "")
  message(STATUS "engine: the signal library's custom ops are registered (TFLM_ROOT/signal)")
endif()
if(TINYFARM_TENSOR_DEBUG)
  message(STATUS "engine: tensor debug (PRESERVE_TENSORS, READ_TENSOR; TENSORS capability)")
endif()
if(_decode)
  message(STATUS "engine: DECODE registered (compressed models), decompression memory "
                 "${TF_DECOMPRESSION_BYTES} B")
endif()
