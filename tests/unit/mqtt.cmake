# Unit tests of the sans-IO MQTT codec (mqtt/); each links only shimmy_mqtt.
shimmy_unit_test(test_utf8 shimmy_mqtt)
shimmy_unit_test(test_topic shimmy_mqtt)
shimmy_unit_test(test_props shimmy_mqtt)
shimmy_unit_test(test_packet shimmy_mqtt)
