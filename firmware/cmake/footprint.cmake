# Prints the firmware footprint: flash = text + data (initial values), RAM = data + bss, where
# bss includes the NOLOAD sections (model buffer, arena, stack).
execute_process(COMMAND ${SIZE_TOOL} --format=berkeley ${ELF} OUTPUT_VARIABLE out)
string(REGEX MATCH "\n[ \t]*([0-9]+)[ \t]+([0-9]+)[ \t]+([0-9]+)" _ "${out}")
math(EXPR flash "${CMAKE_MATCH_1} + ${CMAKE_MATCH_2}")
math(EXPR ram "${CMAKE_MATCH_2} + ${CMAKE_MATCH_3}")
get_filename_component(name ${ELF} NAME)
message("footprint ${name}: flash ${flash} bytes, RAM ${ram} bytes (incl. model buffer, arena, stack)")
