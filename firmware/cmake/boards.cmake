# Per-board settings. Each board sets the CPU flags, its sources and linker script, and the sizes
# HELLO reports: max payload (frame buffers), model buffer, tensor arena, rx window.
set(TF_MODEL_BUFFER_BYTES "" CACHE STRING "model receive buffer (bytes); empty = board default")
set(TF_ARENA_BYTES "" CACHE STRING "TFLM tensor arena (bytes); empty = board default")
set(TF_MAX_PAYLOAD "" CACHE STRING "largest frame payload (bytes); empty = board default")
set(TF_DECOMPRESSION_BYTES "" CACHE STRING
    "DECODE's alternate decompression memory with TINYFARM_TFLM_COMPRESSION (bytes, 0 = none); empty = board default")

set(_dir ${CMAKE_CURRENT_SOURCE_DIR}/boards/${TF_BOARD})
set(_arena_section ".noinit.arena")
if(TF_BOARD STREQUAL "qemu-mps2-an386")
  set(TF_CPU_FLAGS -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16)
  # 4 MB of SSRAM for data: room for a 1 MB model and a 1 MB arena.
  set(_model 1048576)
  set(_arena 1048576)
  set(_decompression 32768)
  set(_payload 4096)
  # The QEMU UART back-pressures the socket, so no byte is ever lost, but QEMU hands the UART one
  # byte per main-loop wake-up: pipelining hides no latency there. Stop-and-wait keeps the host's
  # timeouts simple.
  set(_window 1)
elseif(TF_BOARD STREQUAL "renode-stm32f4-discovery")
  set(TF_CPU_FLAGS -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16)
  # STM32F407VG: 128 KB SRAM + 64 KB CCM, 1 MB flash. Same sizes as the twin's stm32f4-discovery
  # profile (device_harness/boards.yaml): 96 KB model buffer in SRAM, 64 KB arena in CCM.
  set(_model 98304)
  set(_arena 65536)
  set(_decompression 0)  # SRAM is taken by the model buffer, CCM by the arena: decode into the arena
  set(_arena_section ".ccm.arena")
  set(_payload 1024)
  set(_window 1)   # the RX ring holds less than one more frame: stop-and-wait
elseif(TF_BOARD STREQUAL "generic-cortex-m")
  set(TF_CPU_FLAGS -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
      CACHE STRING "CPU flags of your part")
  # Defaults fit the template's 64 KB-RAM linker script with an engine; override with -DTF_...=.
  set(_model 32768)
  set(_arena 16384)
  set(_decompression 0)
  set(_payload 512)
  set(_window 1)
else()
  message(FATAL_ERROR "unknown TF_BOARD '${TF_BOARD}'")
endif()
if(TF_MODEL_BUFFER_BYTES STREQUAL "")
  set(TF_MODEL_BUFFER_BYTES ${_model})
endif()
if(TF_ARENA_BYTES STREQUAL "")
  set(TF_ARENA_BYTES ${_arena})
endif()
if(TF_MAX_PAYLOAD STREQUAL "")
  set(TF_MAX_PAYLOAD ${_payload})
endif()
if(TF_DECOMPRESSION_BYTES STREQUAL "")
  set(TF_DECOMPRESSION_BYTES ${_decompression})
endif()
if(TF_MAX_PAYLOAD LESS 256 OR TF_MAX_PAYLOAD GREATER 65535)
  message(FATAL_ERROR "TF_MAX_PAYLOAD must be within 256..65535 (protocol limits)")
endif()

set(TF_BOARD_SOURCES ${_dir}/board.cpp)
set(TF_LINKER_SCRIPT ${_dir}/linker.ld)

add_compile_options(${TF_CPU_FLAGS} -ffunction-sections -fdata-sections -fno-exceptions
                    $<$<COMPILE_LANGUAGE:CXX>:-fno-rtti> $<$<COMPILE_LANGUAGE:CXX>:-fno-threadsafe-statics>
                    $<$<COMPILE_LANGUAGE:CXX>:-fno-use-cxa-atexit>)
add_link_options(${TF_CPU_FLAGS})
# Board settings reach only the firmware's own targets (see CMakeLists.txt), so changing a buffer
# size does not recompile TFLM.
set(TF_BOARD_DEFINITIONS
  TF_MAX_PAYLOAD=${TF_MAX_PAYLOAD}u
  TF_MODEL_BUFFER_BYTES=${TF_MODEL_BUFFER_BYTES}u
  TF_ARENA_BYTES=${TF_ARENA_BYTES}u
  TF_DECOMPRESSION_BYTES=${TF_DECOMPRESSION_BYTES}u
  TF_RX_WINDOW=${_window}u
  TF_ARENA_SECTION="${_arena_section}"
  TF_FIRMWARE_VERSION="${PROJECT_VERSION}")
message(STATUS "board ${TF_BOARD}: payload ${TF_MAX_PAYLOAD} B, model buffer "
               "${TF_MODEL_BUFFER_BYTES} B, arena ${TF_ARENA_BYTES} B, rx_window ${_window}")
