# Unit tests of the broker's shm module (broker/shm.c) against a fake core:
# links only the module, shmpath and the codec.
add_library(shimmy_broker_shm_only STATIC ${CMAKE_SOURCE_DIR}/broker/shm.c)
find_package(Threads REQUIRED)
target_link_libraries(shimmy_broker_shm_only PUBLIC shimmy_shmpath Threads::Threads)
shimmy_unit_test(test_shm_broker shimmy_broker_shm_only)
