# Unit tests of the broker's shm module (broker/shm.c) against a fake core:
# links only the module, shmpath and the codec.
add_library(shimmy_broker_shm_only STATIC ${CMAKE_SOURCE_DIR}/broker/shm.c)
find_package(Threads REQUIRED)
target_link_libraries(shimmy_broker_shm_only PUBLIC shimmy_shmpath Threads::Threads)
shimmy_unit_test(test_shm_broker shimmy_broker_shm_only)

# The fake broker core both client-side tests below drive the broker module
# through (shm_fakes.h).
set(SHIMMY_SHM_FAKES ${CMAKE_CURRENT_SOURCE_DIR}/shm_fakes.c)

# libshimmy's shm side (clients/shm.c), driven by the broker module above
# through a fake core: the two ends of the control protocol against each
# other, with real segments.
add_executable(test_client_shm test_client_shm.c ${SHIMMY_SHM_FAKES}
               ${CMAKE_SOURCE_DIR}/clients/shm.c
               ${CMAKE_SOURCE_DIR}/clients/shmshare.c
               ${CMAKE_SOURCE_DIR}/clients/session.c ${CMAKE_SOURCE_DIR}/clients/outq.c)
target_include_directories(test_client_shm PRIVATE ${CMAKE_SOURCE_DIR}/clients/include)
target_link_libraries(test_client_shm PRIVATE shimmy_broker_shm_only PkgConfig::CMOCKA)
add_test(NAME unit.test_client_shm COMMAND test_client_shm)
set_tests_properties(unit.test_client_shm PROPERTIES LABELS unit TIMEOUT 120)

# Shared subscriptions over shm: clients/shmshare (and clients/shm) against
# the broker module, through a fake core that knows the groups.
add_executable(test_client_shmshare test_client_shmshare.c ${SHIMMY_SHM_FAKES}
               ${CMAKE_SOURCE_DIR}/clients/shm.c ${CMAKE_SOURCE_DIR}/clients/shmshare.c
               ${CMAKE_SOURCE_DIR}/clients/session.c ${CMAKE_SOURCE_DIR}/clients/outq.c)
target_include_directories(test_client_shmshare PRIVATE ${CMAKE_SOURCE_DIR}/clients/include)
target_link_libraries(test_client_shmshare PRIVATE shimmy_broker_shm_only PkgConfig::CMOCKA)
add_test(NAME unit.test_client_shmshare COMMAND test_client_shmshare)
set_tests_properties(unit.test_client_shmshare PROPERTIES LABELS unit TIMEOUT 120)
