# shimmyd's configuration (broker/config.c, in shimmy_broker_io).
shimmy_unit_test(test_config shimmy_broker_io)
