# cmake -DSIM=<tradecapture_sim> -DMUTATION=<name> -DSEEDS=<count> -P expect_fail.cmake
# Passes only when the simulator, run with a mutation of the core, exits 1 with a FAIL line.
execute_process(COMMAND ${SIM} --seed 1 --seeds ${SEEDS} --mutation ${MUTATION}
                RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}")
if(NOT status EQUAL 1 OR NOT out MATCHES "FAIL seed=[0-9]+: ")
  message(FATAL_ERROR "mutation ${MUTATION} went undetected in ${SEEDS} seeds (exit ${status})\n${err}")
endif()
