# libFuzzer harness for the shm reader against arbitrary segment contents.
# Included from tests/fuzz/CMakeLists.txt after the codec's fuzz library.
set(SHIMMY_SHMPATH_SRCS segment.c notify.c ring.c share.c)
list(TRANSFORM SHIMMY_SHMPATH_SRCS PREPEND ${PROJECT_SOURCE_DIR}/shmpath/)
add_library(shimmy_shmpath_fuzz STATIC ${SHIMMY_SHMPATH_SRCS})
target_compile_options(shimmy_shmpath_fuzz PRIVATE -fsanitize=fuzzer-no-link)
target_link_libraries(shimmy_shmpath_fuzz PUBLIC shimmy_mqtt_fuzz)

add_executable(fuzz_shm_reader ${CMAKE_CURRENT_LIST_DIR}/fuzz_shm_reader.c)
target_compile_options(fuzz_shm_reader PRIVATE -fsanitize=fuzzer)
target_link_options(fuzz_shm_reader PRIVATE -fsanitize=fuzzer)
target_link_libraries(fuzz_shm_reader PRIVATE shimmy_shmpath_fuzz)

# No committed seeds: libFuzzer starts from empty input; the scratch corpus
# lives in the build tree. -timeout catches a reader that hangs.
set(FUZZ_SHM_WORK ${CMAKE_CURRENT_BINARY_DIR}/corpus-shm-reader)
add_test(NAME fuzz.shm_reader
  COMMAND sh -c "rm -rf '${FUZZ_SHM_WORK}' && mkdir -p '${FUZZ_SHM_WORK}' && exec '$<TARGET_FILE:fuzz_shm_reader>' -max_total_time=15 -timeout=5 -rss_limit_mb=2048 -max_len=12289 -print_final_stats=1 '${FUZZ_SHM_WORK}'")
set_tests_properties(fuzz.shm_reader PROPERTIES LABELS fuzz TIMEOUT 120)

# The control-message decoder (shmpath/ctl.c), over arbitrary payloads,
# from one committed seed per message type.
add_executable(fuzz_shm_ctl ${CMAKE_CURRENT_LIST_DIR}/fuzz_shm_ctl.c
               ${PROJECT_SOURCE_DIR}/shmpath/ctl.c)
target_compile_options(fuzz_shm_ctl PRIVATE -fsanitize=fuzzer)
target_link_options(fuzz_shm_ctl PRIVATE -fsanitize=fuzzer)
target_link_libraries(fuzz_shm_ctl PRIVATE shimmy_mqtt_fuzz)
set(FUZZ_SHM_CTL_WORK ${CMAKE_CURRENT_BINARY_DIR}/corpus-shm-ctl)
add_test(NAME fuzz.shm_ctl
  COMMAND sh -c "rm -rf '${FUZZ_SHM_CTL_WORK}' && mkdir -p '${FUZZ_SHM_CTL_WORK}' && cp '${CMAKE_CURRENT_LIST_DIR}'/corpus/shm_ctl/* '${FUZZ_SHM_CTL_WORK}'/ && exec '$<TARGET_FILE:fuzz_shm_ctl>' -max_total_time=10 -timeout=5 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 '${FUZZ_SHM_CTL_WORK}'")
set_tests_properties(fuzz.shm_ctl PROPERTIES LABELS fuzz TIMEOUT 120)
