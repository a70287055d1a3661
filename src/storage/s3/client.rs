//! The AWS SDK client, built from explicit [`S3Options`].

use std::time::Duration;

use super::options::{S3Options, Tuning};

/// Builds the client on `runtime`. vault retries itself (see the module
/// docs of `retry`), so the SDK makes one attempt per call.
pub(super) fn build(
    options: &S3Options,
    tuning: &Tuning,
    runtime: &tokio::runtime::Runtime,
) -> aws_sdk_s3::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(e) = &options.endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some(r) = &options.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(p) = &options.profile {
        loader = loader.profile_name(p);
    }
    if let Some(f) = &options.credentials_file {
        use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
        loader = loader.profile_files(
            EnvConfigFiles::builder()
                .include_default_config_file(true)
                .with_file(EnvConfigFileKind::Credentials, f)
                .build(),
        );
    }
    if let Some((id, secret)) = &options.credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            id, secret, None, None, "vault",
        ));
    }
    // The attempt timeout is a backstop for a part or object upload that
    // crawls; `read_timeout` catches a silent server.
    loader = loader
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(tuning.read_timeout)
                .operation_attempt_timeout(Duration::from_secs(600))
                .build(),
        );
    let shared = runtime.block_on(loader.load());
    let path_style = options.path_style || options.endpoint.is_some();
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
