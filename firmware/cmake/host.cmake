# Host build (TF_BOARD=host): the firmware's protocol + dispatcher layers compiled for the build
# machine with sanitizers, driven by tests/firmware (random and mutated frames).
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(_san -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
endif()
add_executable(tf_fuzz_frames host/fuzz_frames.cpp
  protocol/crc32.cpp protocol/sha256.cpp protocol/frame.cpp
  app/dispatcher.cpp engine/engine_none.cpp)
target_include_directories(tf_fuzz_frames PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(tf_fuzz_frames PRIVATE ${TF_WARNINGS} -g -O1 ${_san})
target_link_options(tf_fuzz_frames PRIVATE ${_san})
target_compile_definitions(tf_fuzz_frames PRIVATE TF_MAX_PAYLOAD=1024u)
