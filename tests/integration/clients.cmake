# Integration tests of libshimmy and shimmy-pub / shimmy-sub (clients/),
# against shimmyd and, with SHIMMY_IT_REFERENCE, against mosquitto. Each
# run starts its own broker through harness.py (TCP and a Unix socket).
if(NOT TARGET shimmy_client OR NOT SHIMMY_IT_PYTHON)
  return()
endif()

add_executable(test_clients_api ${CMAKE_SOURCE_DIR}/clients/tests/test_clients_api.c)
target_link_libraries(test_clients_api PRIVATE shimmy_client)

# expect_shm: the broker negotiates the shm extension (shimmyd does,
# mosquitto does not); test_clients_api checks either outcome.
# The thread case floods 2000 QoS 1/2 messages at a subscriber that a
# loaded machine may slow down: the broker's default max_queued_messages
# (1000, as mosquitto) would then drop some by design. The test checks the
# library's delivery, not that limit (test_delivery.py does), so lift it.
function(shimmy_clients_it prefix broker labels expect_shm)
  add_test(NAME ${prefix}.clients_api
           COMMAND ${SHIMMY_IT_PYTHON} ${_it_harness} run --broker ${broker} --unix
                   --conf-line "max_queued_messages 0"
                   -- $<TARGET_FILE:test_clients_api> {uri} {unix})
  set(names ${prefix}.clients_api)
  if(SHIMMY_IT_MOSQUITTO_SUB)
    add_test(NAME ${prefix}.clients_tools
             COMMAND ${SHIMMY_IT_PYTHON} ${_it_harness} run --broker ${broker} --unix
                     -- ${_it_dir}/test_clients_tools.sh $<TARGET_FILE_DIR:shimmy-pub>)
    list(APPEND names ${prefix}.clients_tools)
  endif()
  set_tests_properties(${names} PROPERTIES
    LABELS "${labels}" TIMEOUT 180 SKIP_RETURN_CODE 77
    ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
  if(expect_shm)
    set_property(TEST ${names} APPEND PROPERTY ENVIRONMENT "SHIMMY_EXPECT_SHM=1")
  endif()
endfunction()

if(TARGET shimmyd)
  shimmy_clients_it(integration $<TARGET_FILE:shimmyd> integration ON)
endif()
if(SHIMMY_IT_MOSQUITTO)
  # The client is validated against the reference broker in every build.
  shimmy_clients_it(integration.mosquitto ${SHIMMY_IT_MOSQUITTO} "integration;reference" OFF)
endif()
