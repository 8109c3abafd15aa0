# Unit tests of libshimmy's sans-IO parts (clients/): URI parsing, the
# output queue and the client protocol session. They link only
# shimmy_client (and the codec below it) and open no sockets.
shimmy_unit_test(test_client_uri shimmy_client)
shimmy_unit_test(test_client_session shimmy_client)
