# Protocol core (broker/msg, subtree, retain, session, broker).
shimmy_unit_test(test_subtree shimmy_broker_core)
shimmy_unit_test(test_slab shimmy_broker_core)
shimmy_unit_test(test_retain shimmy_broker_core)
shimmy_unit_test(test_session shimmy_broker_core)
shimmy_unit_test(test_broker shimmy_broker_core)
shimmy_unit_test(test_scram shimmy_broker_core)
