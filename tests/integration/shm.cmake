# Integration tests of the shared-memory fast path (docs/shm-protocol.md):
# shimmyd with shimmy-pub / shimmy-sub over the Unix socket, mosquitto
# clients over TCP, and shm_probe, a hand-rolled shm/1 client that
# misbehaves on purpose (garbage in its own log, bad control messages) and
# checks that subscriber mappings are read-only.
if(NOT TARGET shimmyd OR NOT TARGET shimmy-sub OR NOT SHIMMY_IT_PYTHON)
  return()
endif()

add_executable(shm_probe ${CMAKE_CURRENT_SOURCE_DIR}/shm_probe.c)
target_link_libraries(shm_probe PRIVATE shimmy_shmpath)

add_test(NAME integration.shm
         COMMAND ${SHIMMY_IT_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_shm.py
                 --broker $<TARGET_FILE:shimmyd>)
add_test(NAME integration.shm_share
         COMMAND ${SHIMMY_IT_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_shm_share.py
                 --broker $<TARGET_FILE:shimmyd>)
add_test(NAME integration.shm_qos
         COMMAND ${SHIMMY_IT_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_shm_qos.py
                 --broker $<TARGET_FILE:shimmyd>)
add_test(NAME integration.shm_namespaces
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_shm_namespaces.sh
                 $<TARGET_FILE:shimmyd> $<TARGET_FILE_DIR:shimmy-sub>)
set_tests_properties(integration.shm integration.shm_share integration.shm_qos
                     integration.shm_namespaces PROPERTIES
  LABELS "integration" TIMEOUT 180 SKIP_RETURN_CODE 77
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;SHIMMY_BIN=$<TARGET_FILE_DIR:shimmy-sub>")
