"""The interfaces over the pipeline: the command line, the job server, headless notebooks."""
