"""The data stages of the pipeline, one module each: prompts -> taxonomy -> prompt labels -> configs
-> responses -> judgments -> preferences."""
