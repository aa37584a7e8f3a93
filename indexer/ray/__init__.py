"""The Ray engine (`vitsearch index --engine ray`): the driver and what runs on the cluster. Ray
is imported only when this engine is asked for."""
