# MQTT 5 feature tests (test_v5_*.py, and test_scram.py) against shimmyd; included from
# CMakeLists.txt (include(v5.cmake OPTIONAL)) after shimmy_it_tests is defined.
if(TARGET shimmyd AND SHIMMY_IT_PYTHON)
  foreach(_v5 features:60 disconnects:60 scram:60)
    string(REPLACE ":" ";" _v5p ${_v5})
    list(GET _v5p 0 _v5name)
    list(GET _v5p 1 _v5timeout)
    if(_v5name STREQUAL "scram")
      set(_v5file scram)
    else()
      set(_v5file v5_${_v5name})
    endif()
    add_test(NAME integration.v5_${_v5name}
             COMMAND ${SHIMMY_IT_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_${_v5file}.py
                     --broker $<TARGET_FILE:shimmyd>)
    set_tests_properties(integration.v5_${_v5name} PROPERTIES
      TIMEOUT ${_v5timeout}
      LABELS integration
      SKIP_RETURN_CODE 77
      ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
  endforeach()
endif()
