# Unit tests of the shared-memory fast path (shmpath/); each links only
# shimmy_shmpath (and the codec below it).
shimmy_unit_test(test_shm_segment shimmy_shmpath)
shimmy_unit_test(test_shm_notify shimmy_shmpath)
shimmy_unit_test(test_shm_holdoff shimmy_shmpath)
shimmy_unit_test(test_shm_ring shimmy_shmpath)
shimmy_unit_test(test_shm_share shimmy_shmpath)
shimmy_unit_test(test_shm_ctl shimmy_shmpath)
shimmy_unit_test(test_shm_tether shimmy_shmpath)
set_tests_properties(unit.test_shm_ring PROPERTIES LABELS "unit;slow" TIMEOUT 120)
