"""The fraudpipe operator: reconciles FraudPipeline resources into a running pipeline."""
