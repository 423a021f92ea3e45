//! Checks on `template.yaml`: cfn-lint and `sam validate --lint` with every optional part on, and
//! what cfn-lint cannot check under the SAM transform: runtime,
//! architecture, build method, timeout against the upstream budget, routes, least privilege
//! for the receiver and the worker, the records table and the queues, and that every
//! environment variable it sets is one the function reads.

use serde_norway::Value;

const TEMPLATE: &str = include_str!("../template.yaml");

fn template() -> Value {
    serde_norway::from_str(TEMPLATE).expect("template.yaml is YAML")
}

fn function(t: &Value) -> &Value {
    &t["Resources"]["FinalizeFunction"]
}

fn worker(t: &Value) -> &Value {
    &t["Resources"]["WorkerFunction"]
}

/// A list of strings' items (none if it is not a list).
fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A `!Ref X` tag's target.
fn reference(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str(),
        _ => None,
    }
}

#[test]
fn runs_on_provided_al2023_built_by_cargo_lambda_as_bootstrap() {
    let t = template();
    // The language extensions first: they settle the parameters' Fn::If before SAM reads them.
    assert_eq!(
        strings(&t["Transform"]),
        ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    );
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Handler"], "bootstrap");
    for f in [function(&t), worker(&t)] {
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
        assert_eq!(f["Metadata"]["BuildProperties"]["Binary"], "bootstrap");
        assert_eq!(f["Properties"]["LoggingConfig"]["LogFormat"], "JSON");
    }
}

#[test]
fn defaults_to_arm64_and_offers_x86_64() {
    let t = template();
    let architectures = t["Globals"]["Function"]["Architectures"]
        .as_sequence()
        .unwrap();
    assert_eq!(architectures.len(), 1);
    assert_eq!(reference(&architectures[0]), Some("Architecture"));
    let parameter = &t["Parameters"]["Architecture"];
    assert_eq!(parameter["Default"], "arm64");
    assert_eq!(strings(&parameter["AllowedValues"]), ["arm64", "x86_64"]);
}

#[test]
fn the_function_timeout_exceeds_the_largest_upstream_budget() {
    let t = template();
    let timeout_secs = t["Globals"]["Function"]["Timeout"].as_u64().unwrap();
    let budget = &t["Parameters"]["UpstreamTimeoutMs"];
    let largest_ms = budget["MaxValue"].as_u64().unwrap();
    assert_eq!(
        budget["Default"].as_u64(),
        Some(ghl_csv_finalize::app::config::DEFAULT_UPSTREAM_TIMEOUT_MS)
    );
    assert!(
        timeout_secs * 1000 > largest_ms + 500,
        "Timeout {timeout_secs}s leaves no room for a {largest_ms} ms budget"
    );
    assert!(timeout_secs <= 30, "HTTP API integrations time out at 30 s");
}

#[test]
fn routes_the_two_finalize_forms_the_health_check_the_status_route_and_app_webhooks() {
    let t = template();
    let events = function(&t)["Properties"]["Events"].as_mapping().unwrap();
    let mut routes: Vec<(String, String)> = events
        .values()
        .map(|e| {
            assert_eq!(e["Type"], "HttpApi");
            (
                e["Properties"]["Method"].as_str().unwrap().to_owned(),
                e["Properties"]["Path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            (
                "GET".to_owned(),
                "/finalizations/{finalizationId}".to_owned()
            ),
            ("GET".to_owned(), "/healthz".to_owned()),
            ("GET".to_owned(), "/oauth/callback".to_owned()),
            ("GET".to_owned(), "/oauth/install".to_owned()),
            ("POST".to_owned(), "/finalize".to_owned()),
            (
                "POST".to_owned(),
                "/locations/{locationId}/csv/{csvId}/finalize".to_owned()
            ),
            ("POST".to_owned(), "/webhooks/highlevel".to_owned()),
        ]
    );
}

/// The receiver's policy statements, with the condition guarding each (`None` when
/// unconditional).
fn statements(t: &Value) -> Vec<(Option<String>, Value)> {
    assert_eq!(
        reference_of_arn(&function(t)["Properties"]["Role"]),
        Some("FinalizeRole")
    );
    statements_of(&t["Resources"]["FinalizeRole"])
}

/// The worker's policy statements, likewise.
fn worker_statements(t: &Value) -> Vec<(Option<String>, Value)> {
    assert_eq!(
        reference_of_arn(&worker(t)["Properties"]["Role"]),
        Some("WorkerRole")
    );
    statements_of(&t["Resources"]["WorkerRole"])
}

/// The resource a `!GetAtt X.Arn` names.
fn reference_of_arn(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "!GetAtt" => {
            tagged.value.as_str()?.strip_suffix(".Arn")
        }
        _ => None,
    }
}

fn statements_of(role: &Value) -> Vec<(Option<String>, Value)> {
    assert!(
        role["Properties"]["ManagedPolicyArns"].is_null(),
        "no managed policy"
    );
    let policies = role["Properties"]["Policies"].as_sequence().unwrap();
    let mut out = Vec::new();
    for policy in policies {
        for statement in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
            match statement {
                Value::Tagged(tagged) if tagged.tag == "!If" => {
                    let branches = tagged.value.as_sequence().unwrap();
                    out.push((branches[0].as_str().map(str::to_owned), branches[1].clone()));
                }
                other => out.push((None, other.clone())),
            }
        }
    }
    out
}

/// Every action a function's statements allow, with the statement's condition.
fn actions(statements: Vec<(Option<String>, Value)>) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for (condition, statement) in statements {
        assert_ne!(
            statement["Resource"].as_str(),
            Some("*"),
            "no wildcard resource"
        );
        let listed = match &statement["Action"] {
            Value::String(one) => vec![one.clone()],
            Value::Sequence(many) => many
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            other => panic!("unexpected action {other:?}"),
        };
        for action in listed {
            out.push((condition.clone(), action));
        }
    }
    out.sort();
    out
}

fn owned(pairs: &[(Option<&str>, &str)]) -> Vec<(Option<String>, String)> {
    pairs
        .iter()
        .map(|(c, a)| (c.map(str::to_owned), (*a).to_owned()))
        .collect()
}

#[test]
fn the_receiver_touches_tokens_only_in_sync_mode_installs_and_uninstalls() {
    let t = template();
    let granted = actions(statements(&t));
    let expected = owned(&[
        (None, "logs:CreateLogStream"),
        (None, "logs:PutLogEvents"),
        (Some("AppWebhooks"), "secretsmanager:GetSecretValue"),
        (Some("AppWebhooks"), "secretsmanager:PutSecretValue"),
        (
            Some("HasInboundAuthSecret"),
            "secretsmanager:GetSecretValue",
        ),
        (Some("InstallFlow"), "secretsmanager:CreateSecret"),
        (Some("InstallFlow"), "secretsmanager:GetSecretValue"),
        (Some("InstallFlow"), "secretsmanager:GetSecretValue"),
        (Some("InstallFlow"), "secretsmanager:PutSecretValue"),
        (Some("KeepRecords"), "dynamodb:GetItem"),
        (Some("KeepRecords"), "dynamodb:PutItem"),
        (Some("OAuthAndSync"), "secretsmanager:PutSecretValue"),
        (Some("QueueMode"), "sqs:SendMessage"),
        (Some("SyncMode"), "secretsmanager:GetSecretValue"),
    ]);
    assert_eq!(granted, expected);
    assert_eq!(t["Parameters"]["OAuthMode"]["Default"], "false");
}

#[test]
fn the_worker_only_reads_tokens_writes_records_and_works_its_own_queue() {
    let t = template();
    assert_eq!(worker(&t)["Condition"], "QueueMode");
    let granted = actions(worker_statements(&t));
    let expected = owned(&[
        (None, "dynamodb:GetItem"),
        (None, "dynamodb:PutItem"),
        (None, "logs:CreateLogStream"),
        (None, "logs:PutLogEvents"),
        (None, "secretsmanager:GetSecretValue"),
        (None, "sqs:ChangeMessageVisibility"),
        (None, "sqs:DeleteMessage"),
        (None, "sqs:GetQueueAttributes"),
        (None, "sqs:ReceiveMessage"),
        (None, "sqs:SendMessage"),
        (Some("OAuthAndQueue"), "secretsmanager:PutSecretValue"),
    ]);
    assert_eq!(
        granted, expected,
        "no inbound-auth secret; SendMessage to its own queue only, for the import checks"
    );
}

#[test]
fn keeps_records_in_an_on_demand_table_with_ttl_and_point_in_time_recovery_by_default() {
    let t = template();
    assert_eq!(t["Parameters"]["IdempotencyEnabled"]["Default"], "true");
    let table = &t["Resources"]["FinalizationsTable"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    assert_eq!(table["Condition"], "KeepRecords");
    let p = &table["Properties"];
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(p["KeySchema"][0]["AttributeName"], "pk");
    assert_eq!(p["KeySchema"][0]["KeyType"], "HASH");
    assert_eq!(p["AttributeDefinitions"][0]["AttributeType"], "S");
    assert_eq!(p["TimeToLiveSpecification"]["AttributeName"], "expires_at");
    assert_eq!(p["TimeToLiveSpecification"]["Enabled"], true);
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    let keep: Value = serde_norway::from_str(
        r#"!Or [!Equals [!Ref IdempotencyEnabled, "true"], !Condition QueueMode]"#,
    )
    .unwrap();
    assert_eq!(
        t["Conditions"]["KeepRecords"], keep,
        "queue mode always keeps records"
    );
    assert_eq!(
        t["Parameters"]["IdempotencyTtlSecs"]["Default"].as_u64(),
        Some(ghl_csv_finalize::app::config::DEFAULT_IDEMPOTENCY_TTL_SECS)
    );
    assert_eq!(
        t["Parameters"]["IdempotencyTtlSecs"]["MinValue"].as_u64(),
        Some(ghl_csv_finalize::app::config::MIN_IDEMPOTENCY_TTL_SECS),
        "the template refuses a TTL the function would refuse at start"
    );
}

#[test]
fn queue_mode_has_a_queue_a_dead_letter_queue_and_a_worker_reporting_batch_item_failures() {
    let t = template();
    assert_eq!(t["Parameters"]["DeliveryMode"]["Default"], "sync");
    let queue = &t["Resources"]["FinalizeQueue"]["Properties"];
    let redrive = &queue["RedrivePolicy"];
    assert_eq!(
        reference(&redrive["maxReceiveCount"]),
        Some("QueueMaxReceives")
    );
    assert_eq!(
        t["Parameters"]["QueueMaxReceives"]["Default"].as_u64(),
        Some(ghl_csv_finalize::app::config::DEFAULT_QUEUE_MAX_RECEIVES.into())
    );
    let Value::Tagged(target) = &redrive["deadLetterTargetArn"] else {
        panic!("a !GetAtt")
    };
    assert_eq!(
        (target.tag.to_string().as_str(), target.value.as_str()),
        ("!GetAtt", Some("FinalizeDeadLetterQueue.Arn"))
    );
    assert_eq!(
        reference(&queue["MessageRetentionPeriod"]),
        Some("QueueRetentionSecs")
    );
    assert_eq!(
        t["Parameters"]["QueueRetentionSecs"]["Default"].as_u64(),
        Some(4 * 86_400)
    );
    let dead = &t["Resources"]["FinalizeDeadLetterQueue"]["Properties"];
    assert_eq!(
        dead["MessageRetentionPeriod"].as_u64(),
        Some(14 * 86_400),
        "two weeks to redrive"
    );

    let event = &worker(&t)["Properties"]["Events"]["Queue"];
    assert_eq!(event["Type"], "SQS");
    assert_eq!(
        event["Properties"]["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    assert_eq!(
        reference(&event["Properties"]["ScalingConfig"]["MaximumConcurrency"]),
        Some("WorkerMaxConcurrency")
    );
    assert_eq!(
        reference(&event["Properties"]["BatchSize"]),
        Some("WorkerBatchSize")
    );
    let env = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        reference(&env["QUEUE_MAX_RECEIVES"]),
        Some("QueueMaxReceives"),
        "the worker knows its last receive"
    );
    let Value::Tagged(retention) = &env["QUEUE_RETENTION_SECS"] else {
        panic!("QUEUE_RETENTION_SECS is an !If");
    };
    let branches = retention.value.as_sequence().unwrap();
    assert_eq!(
        (branches[0].as_str(), reference(&branches[1])),
        (Some("QueueMode"), Some("QueueRetentionSecs")),
        "records outlive the queue's messages"
    );
}

#[test]
fn a_message_never_comes_back_while_a_worker_still_works_on_it() {
    let t = template();
    let visibility = t["Resources"]["FinalizeQueue"]["Properties"]["VisibilityTimeout"]
        .as_u64()
        .unwrap();
    let timeout = t["Globals"]["Function"]["Timeout"].as_u64().unwrap();
    assert!(
        visibility >= 6 * timeout,
        "AWS advises six times the function timeout: {visibility} < 6 x {timeout}"
    );
    assert!(visibility <= 43_200);
}

#[test]
fn sets_only_variables_the_function_reads() {
    let t = template();
    let variables = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    let known = [
        "GHL_TOKEN_SECRET_ID",
        "GHL_AGENCY_SECRET_ID",
        "GHL_WEBHOOK_PUBLIC_KEY",
        "GHL_APP_SECRET_ID",
        "GHL_TOKEN",
        "INBOUND_AUTH_SECRET_ID",
        "ALLOW_UNAUTHENTICATED",
        "GHL_API_BASE_URL",
        "GHL_API_VERSION",
        "GHL_DEFAULT_USER_ID",
        "UPSTREAM_TIMEOUT_MS",
        "MAX_ATTEMPTS",
        "SECRET_CACHE_TTL_SECS",
        "OAUTH_REFRESH_SKEW_SECS",
        "IDEMPOTENCY_TABLE",
        "IDEMPOTENCY_TTL_SECS",
        "QUEUE_URL",
        "QUEUE_MAX_RECEIVES",
        "QUEUE_RETENTION_SECS",
        "FOLLOW_IMPORTS",
        "FOLLOW_INTERVAL_SECS",
        "FOLLOW_TIMEOUT_SECS",
        "CALLBACK_URL",
        "METRICS_NAMESPACE",
    ];
    let source = include_str!("../src/app/config.rs");
    for name in variables.keys().map(|k| k.as_str().unwrap()) {
        assert!(known.contains(&name), "{name} is not a setting");
        assert!(
            source.contains(&format!("\"{name}\"")),
            "config.rs does not read {name}"
        );
    }
}

#[test]
fn keeps_logs_for_a_chosen_number_of_days_thirty_by_default() {
    let t = template();
    let group = &t["Resources"]["FinalizeLogGroup"];
    assert_eq!(group["Type"], "AWS::Logs::LogGroup");
    assert_eq!(
        reference(&group["Properties"]["RetentionInDays"]),
        Some("LogRetentionDays")
    );
    assert_eq!(
        t["Parameters"]["LogRetentionDays"]["Default"].as_u64(),
        Some(30)
    );
    let logging = &function(&t)["Properties"]["LoggingConfig"];
    assert_eq!(reference(&logging["LogGroup"]), Some("FinalizeLogGroup"));
}

#[test]
fn throttles_the_http_api_with_parameters() {
    let t = template();
    let settings = &t["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"];
    assert_eq!(
        reference(&settings["ThrottlingRateLimit"]),
        Some("ThrottlingRateLimit")
    );
    assert_eq!(
        reference(&settings["ThrottlingBurstLimit"]),
        Some("ThrottlingBurstLimit")
    );
    for name in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
        assert!(
            t["Parameters"][name]["Default"].as_u64().unwrap() > 0,
            "{name}"
        );
    }
}

#[test]
fn reserves_concurrency_only_when_asked() {
    let t = template();
    assert_eq!(t["Parameters"]["ReservedConcurrency"]["Default"], "");
    let reserved = &function(&t)["Properties"]["ReservedConcurrentExecutions"];
    let Value::Tagged(tagged) = reserved else {
        panic!("ReservedConcurrentExecutions is conditional")
    };
    assert_eq!(tagged.tag, "!If");
    let branches = tagged.value.as_sequence().unwrap();
    assert_eq!(branches[0], "HasReservedConcurrency");
    assert_eq!(reference(&branches[1]), Some("ReservedConcurrency"));
    assert_eq!(reference(&branches[2]), Some("AWS::NoValue"));
}

#[test]
fn never_retries_an_asynchronous_invocation() {
    let t = template();
    let config = &function(&t)["Properties"]["EventInvokeConfig"];
    assert_eq!(config["MaximumRetryAttempts"].as_u64(), Some(0));
}

/// The `!Sub [pattern, {Name: …}]` of a statement's resource.
fn sub_pattern(resource: &Value) -> (String, Value) {
    let Value::Tagged(tagged) = resource else {
        panic!("the resource is a !Sub: {resource:?}")
    };
    assert_eq!(tagged.tag, "!Sub");
    match &tagged.value {
        Value::String(pattern) => (pattern.clone(), Value::Null),
        Value::Sequence(parts) => (
            parts[0].as_str().unwrap().to_owned(),
            parts[1]["Name"].clone(),
        ),
        other => panic!("unexpected !Sub {other:?}"),
    }
}

#[test]
fn grants_the_token_secrets_exactly_as_the_template_names_them_and_nothing_wider() {
    let t = template();
    let arn = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:";
    // The agency secret when there is one, else the token secret(s).
    let template_name: Value = serde_norway::from_str(
        r#"!If [AgencyConnection, !Ref AgencySecretName, !Join ["*", !Split ["{locationId}", !Ref TokenSecretName]]]"#,
    )
    .unwrap();
    let mut token_statements = 0;
    let secret_statements = statements(&t)
        .into_iter()
        .chain(worker_statements(&t))
        .filter(|(_, s)| {
            let action = |a: &Value| a.as_str().is_some_and(|a| a.starts_with("secretsmanager:"));
            action(&s["Action"])
                || s["Action"]
                    .as_sequence()
                    .is_some_and(|a| a.iter().any(action))
        });
    for (_, statement) in secret_statements {
        let (pattern, name) = sub_pattern(&statement["Resource"]);
        match statement["Sid"].as_str().unwrap() {
            "ReadTokenSecrets"
            | "WriteRefreshedTokens"
            | "EndUninstalledTokens"
            | "StoreInstalledPairs" => {
                token_statements += 1;
                // Only the placeholder becomes a wildcard; the rest is the random ARN suffix.
                assert_eq!(pattern, format!("{arn}${{Name}}-??????"));
                assert_eq!(name, template_name);
            }
            "ReadInboundAuthSecret" => {
                assert_eq!(pattern, format!("{arn}${{InboundAuthSecretName}}-??????"));
            }
            "ReadAppSecret" => {
                assert_eq!(pattern, format!("{arn}${{AppSecretName}}-??????"));
            }
            other => panic!("unexpected statement {other}"),
        }
    }
    assert_eq!(
        token_statements, 6,
        "read and write, in the receiver and the worker; the receiver's uninstalls and installs"
    );
}

#[test]
fn an_agency_secret_replaces_the_token_secret_and_is_written_back() {
    let t = template();
    let variables = &t["Globals"]["Function"]["Environment"]["Variables"];
    let parsed = |text: &str| -> Value { serde_norway::from_str(text).unwrap() };
    assert_eq!(
        variables["GHL_AGENCY_SECRET_ID"],
        parsed("!If [AgencyConnection, !Ref AgencySecretName, !Ref AWS::NoValue]")
    );
    assert_eq!(
        variables["GHL_TOKEN_SECRET_ID"],
        parsed("!If [AgencyConnection, !Ref AWS::NoValue, !Ref TokenSecretName]")
    );
    assert_eq!(
        t["Conditions"]["AgencyConnection"],
        parsed(r#"!Not [!Equals [!Ref AgencySecretName, ""]]"#)
    );
    assert_eq!(
        t["Conditions"]["OAuthEnabled"],
        parsed(r#"!Or [!Equals [!Ref OAuthMode, "true"], !Condition AgencyConnection]"#),
        "an agency pair is refreshed and written back"
    );
    assert_eq!(t["Parameters"]["AgencySecretName"]["Default"], "");
    for (rule, parameter) in [
        ("AgencySecretIsItsOwn", "AgencySecretName"),
        ("AppSecretIsItsOwn", "AppSecretName"),
    ] {
        let rule = &t["Rules"][rule];
        // Only when set: both empty (no agency, no inbound-auth secret) is a valid deployment.
        assert_eq!(
            rule["RuleCondition"],
            parsed(&format!(r#"!Not [!Equals [!Ref {parameter}, ""]]"#))
        );
        assert_eq!(
            rule["Assertions"][0]["Assert"],
            parsed(&format!(
                "!Not [!Equals [!Ref {parameter}, !Ref InboundAuthSecretName]]"
            ))
        );
    }
}

#[test]
fn refuses_at_deploy_a_callback_url_without_queue_mode_following_imports_and_a_signing_secret() {
    let t = template();
    let rule = &t["Rules"]["CallbackUrlNeedsQueueModeAndASigningSecret"];
    let condition: Value =
        serde_norway::from_str(r#"!Not [!Equals [!Ref CallbackUrl, ""]]"#).unwrap();
    assert_eq!(rule["RuleCondition"], condition);
    let asserted: Vec<Value> = rule["Assertions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a["Assert"].clone())
        .collect();
    for expected in [
        r#"!Equals [!Ref DeliveryMode, queue]"#,
        r#"!Equals [!Ref FollowImports, "true"]"#,
        r#"!Not [!Equals [!Ref InboundAuthSecretName, ""]]"#,
    ] {
        let expected: Value = serde_norway::from_str(expected).unwrap();
        assert!(asserted.contains(&expected), "{expected:?}");
    }
    let pattern = t["Parameters"]["CallbackUrl"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert!(pattern.starts_with("^$|^https://"), "https only: {pattern}");
}

#[test]
fn refuses_at_deploy_a_placeholder_without_fixed_text_or_one_secret_for_both() {
    let t = template();
    let assertions = t["Rules"]["TokenSecretTemplateHasFixedText"]["Assertions"]
        .as_sequence()
        .unwrap();
    let asserted: Vec<Value> = assertions.iter().map(|a| a["Assert"].clone()).collect();
    for expected in [
        r#"!Not [!Equals [!Ref TokenSecretName, "{locationId}"]]"#,
        r#"!Not [!Equals [!Ref TokenSecretName, !Ref InboundAuthSecretName]]"#,
    ] {
        let expected: Value = serde_norway::from_str(expected).unwrap();
        assert!(asserted.contains(&expected), "{expected:?}");
    }
}

#[test]
fn alarms_and_the_dashboard_are_off_by_default_and_notify_one_topic() {
    let t = template();
    assert_eq!(t["Parameters"]["AlarmsEnabled"]["Default"], "false");
    assert_eq!(t["Parameters"]["AlarmEmail"]["Default"], "");
    let resources = t["Resources"].as_mapping().unwrap();
    let mut alarms = Vec::new();
    for (name, resource) in resources {
        let name = name.as_str().unwrap();
        match resource["Type"].as_str().unwrap() {
            "AWS::CloudWatch::Alarm" => {
                let condition = resource["Condition"].as_str().unwrap();
                assert!(
                    ["CreateAlarms", "AlarmsAndQueue"].contains(&condition),
                    "{name}"
                );
                for actions in ["AlarmActions", "OKActions"] {
                    let targets = resource["Properties"][actions].as_sequence().unwrap();
                    assert_eq!(
                        targets.iter().filter_map(reference).collect::<Vec<_>>(),
                        ["AlarmTopic"],
                        "{name}"
                    );
                }
                alarms.push(name.to_owned());
            }
            "AWS::SNS::Topic" | "AWS::CloudWatch::Dashboard" => {
                assert_eq!(resource["Condition"], "CreateAlarms", "{name}")
            }
            "AWS::SNS::Subscription" => {
                assert_eq!(resource["Condition"], "HasAlarmEmail");
                assert_eq!(resource["Properties"]["Protocol"], "email");
                assert_eq!(
                    reference(&resource["Properties"]["Endpoint"]),
                    Some("AlarmEmail")
                );
            }
            _ => {}
        }
    }
    alarms.sort();
    assert_eq!(
        alarms,
        [
            "CallbacksFailedAlarm",
            "DeadLetterQueueAlarm",
            "FunctionErrorsAlarm",
            "FunctionThrottlesAlarm",
            "ServerErrorRateAlarm",
            "UnrecordedResultsAlarm",
            "UnwrittenTokenPairsAlarm",
            "WorkerErrorsAlarm"
        ]
    );
}

#[test]
fn the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use() {
    let t = template();
    let topic = &t["Resources"]["AlarmTopic"]["Properties"];
    assert_eq!(
        reference(&topic["KmsMasterKeyId"]),
        Some("AlarmTopicKey"),
        "not alias/aws/sns, which CloudWatch alarms cannot publish with"
    );
    let key = &t["Resources"]["AlarmTopicKey"];
    assert_eq!(key["Type"], "AWS::KMS::Key");
    assert_eq!(key["Condition"], "CreateAlarms");
    let statements = key["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence()
        .unwrap();
    let cloudwatch = statements
        .iter()
        .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .expect("a statement for CloudWatch");
    assert_eq!(cloudwatch["Effect"], "Allow");
    let actions: Vec<&str> = cloudwatch["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(actions, ["kms:Decrypt", "kms:GenerateDataKey*"]);
}

#[test]
fn the_alarms_watch_what_the_contract_names() {
    let t = template();
    let alarm = |name: &str| t["Resources"][name]["Properties"].clone();
    for (name, namespace, metric) in [
        ("FunctionErrorsAlarm", "AWS/Lambda", "Errors"),
        ("FunctionThrottlesAlarm", "AWS/Lambda", "Throttles"),
        (
            "DeadLetterQueueAlarm",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
        ),
    ] {
        let p = alarm(name);
        assert_eq!(
            (p["Namespace"].as_str(), p["MetricName"].as_str()),
            (Some(namespace), Some(metric)),
            "{name}"
        );
        assert_eq!(
            (p["Threshold"].as_u64(), p["ComparisonOperator"].as_str()),
            (Some(0), Some("GreaterThanThreshold")),
            "{name}"
        );
    }
    for (name, metric) in [
        ("UnwrittenTokenPairsAlarm", "UnwrittenTokenPairs"),
        ("CallbacksFailedAlarm", "CallbacksFailed"),
    ] {
        let own = alarm(name);
        assert_eq!(reference(&own["Namespace"]), Some("MetricsNamespace"));
        assert_eq!(own["MetricName"], metric);
    }
    let rate = alarm("ServerErrorRateAlarm");
    let metrics = rate["Metrics"].as_sequence().unwrap();
    let names: Vec<&str> = metrics
        .iter()
        .filter_map(|m| m["MetricStat"]["Metric"]["MetricName"].as_str())
        .collect();
    assert_eq!(names, ["ServerErrors", "Requests"]);
    assert!(metrics[2]["Expression"]
        .as_str()
        .unwrap()
        .contains("100 * errors / requests"));
    assert_eq!(
        reference(&rate["Threshold"]),
        Some("ServerErrorRatePercent")
    );
    // The metrics the alarms read are the ones the function writes.
    let emf = include_str!("../src/observe/emf.rs");
    for metric in [
        "ServerErrors",
        "Requests",
        "UnwrittenTokenPairs",
        "CallbacksFailed",
    ] {
        assert!(
            emf.contains(&format!("\"{metric}\"")),
            "{metric} is written"
        );
    }
}

#[test]
fn the_dashboard_shows_every_metric_the_function_writes() {
    let t = template();
    let Value::Tagged(sub) = &t["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]
    else {
        panic!("a !Sub")
    };
    let body = sub.value.as_sequence().unwrap()[0]
        .as_str()
        .unwrap()
        .to_owned();
    let body = body
        .replace("${AWS::Region}", "us-east-1")
        .replace("${Ns}", "GhlCsvFinalize")
        .replace("${FinalizeFunction}", "f");
    let parsed: serde_json::Value =
        serde_json::from_str(&body).expect("the dashboard body is JSON");
    assert!(parsed["widgets"].as_array().is_some_and(|w| w.len() >= 6));
    for metric in [
        "Requests",
        "Finalized",
        "Failed",
        "Replayed",
        "Queued",
        "Attempts",
        "UpstreamLatencyMs",
        "UpstreamStatus",
        "RateLimitRemaining",
        "TokenRefreshes",
        "TokensMinted",
        "AppInstalls",
        "UnwrittenTokenPairs",
        "UnrecordedResults",
        "AuthFailures",
        "QueueAgeMs",
        "ImportsCompleted",
        "ImportsFailed",
        "PostsFailed",
        "ImportDurationMs",
        "CallbacksDelivered",
        "CallbacksFailed",
        "ColdStart",
    ] {
        assert!(
            body.contains(&format!("\"{metric}\"")) || body.contains(&format!("\\\"{metric}\\\"")),
            "{metric}"
        );
    }
}

/// The template with `overrides` (parameter, default) applied to its parameter defaults.
fn with_defaults(overrides: &[(&str, &str, &str)]) -> String {
    let mut text = TEMPLATE.to_owned();
    for (parameter, from, to) in overrides {
        let block = format!("  {parameter}:\n    Type: String\n    Default: {from}\n");
        assert!(text.contains(&block), "{parameter} defaults to {from}");
        text = text.replace(
            &block,
            &format!("  {parameter}:\n    Type: String\n    Default: {to}\n"),
        );
    }
    text
}

/// Runs a Python tool's entry point (through `python3`, so it need not be on `PATH`).
fn python(code: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("python3")
        .args(["-c", code])
        .args(args)
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .expect("python3 runs (scripts/test installs cfn-lint and aws-sam-cli)")
}

/// A capacity provider's ARN, as the `CapacityProviderArn` parameter takes it.
const CAPACITY_PROVIDER: &str = "arn:aws:lambda:us-east-1:123456789012:capacity-provider:ghl";

/// cfn-lint, `sam validate --lint` and `sam validate --language-extensions` (the SAM translator
/// after the language extensions, as CloudFormation runs them) on the template as deployed with
/// every optional part on: alarms with an e-mail subscription, queue mode (worker, dead-letter
/// queue alarm), records, an agency connection and Lambda Managed Instances.
#[test]
fn the_template_with_alarms_and_queue_mode_on_passes_cfn_lint_and_sam_validate() {
    let text = with_defaults(&[
        ("AlarmsEnabled", "\"false\"", "\"true\""),
        ("AlarmEmail", "\"\"", "ops@example.com"),
        ("DeliveryMode", "sync", "queue"),
        ("AgencySecretName", "\"\"", "ghl/agency"),
        ("CapacityProviderArn", "\"\"", CAPACITY_PROVIDER),
    ]);
    let dir = std::env::temp_dir().join(format!("ghl-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("template.yaml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap();
    let lint = python(
        "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())",
        &[path],
    );
    let sam = |flag: &str| {
        python(
            "import sys; from samcli.cli.main import cli; sys.argv[0] = 'sam'; sys.exit(cli())",
            &[
                "validate",
                flag,
                "--region",
                "us-east-1",
                "--template-file",
                path,
            ],
        )
    };
    let validate = sam("--lint");
    let translate = sam("--language-extensions");
    let _ = std::fs::remove_dir_all(&dir);
    for (tool, output) in [
        ("cfn-lint", lint),
        ("sam validate --lint", validate),
        ("sam validate --language-extensions", translate),
    ] {
        assert!(
            output.status.success(),
            "{tool}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The template as deployed with alarms and queue mode on, translated as CloudFormation does it.
fn translated_with_everything_on() -> serde_json::Value {
    translated(&[
        ("AlarmsEnabled", "\"false\"", "\"true\""),
        ("DeliveryMode", "sync", "queue"),
    ])
}

/// The template with `overrides` applied to its parameter defaults, as CloudFormation deploys
/// it: the language extensions (SAM CLI's copy of them) settle the parameters, then the SAM
/// translator (the library the SAM transform runs) makes the resources; as JSON.
fn translated(overrides: &[(&str, &str, &str)]) -> serde_json::Value {
    let text = with_defaults(overrides);
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ghl-translate-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("template.yaml");
    std::fs::write(&path, text).unwrap();
    let output = python(
        r#"
import json, os, sys
from samtranslator.yaml_helper import yaml_parse
from samtranslator.translator.transform import transform
from samcli.lib.cfn_language_extensions.api import process_template
class NoManagedPolicies:
    def load(self):
        return {}
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
template = process_template(yaml_parse(open(sys.argv[1]).read()))
template["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"
print(json.dumps(transform(template, {}, NoManagedPolicies())))
"#,
        &[path.to_str().unwrap()],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "the SAM translator: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the translation is JSON")
}

#[test]
fn translated_no_role_has_a_managed_policy_or_a_wildcard_resource() {
    let t = translated_with_everything_on();
    let resources = t["Resources"].as_object().unwrap();
    let roles: Vec<_> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::IAM::Role")
        .collect();
    assert!(roles.len() >= 2, "the receiver's and the worker's");
    for (name, role) in roles {
        let managed = &role["Properties"]["ManagedPolicyArns"];
        assert!(
            managed.as_array().is_none_or(Vec::is_empty),
            "{name}: {managed}"
        );
        for policy in role["Properties"]["Policies"].as_array().unwrap() {
            let statements = &policy["PolicyDocument"]["Statement"];
            assert!(
                !statements.to_string().contains(r#""Resource":"*""#),
                "{name}: {statements}"
            );
        }
    }
    let mappings = resources
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
        .count();
    assert_eq!(mappings, 1, "the worker still reads its queue");
}

#[test]
fn translated_the_queues_and_the_table_are_kept_and_the_alarm_topic_is_usable() {
    let t = translated_with_everything_on();
    let resources = &t["Resources"];
    for name in [
        "FinalizeQueue",
        "FinalizeDeadLetterQueue",
        "FinalizationsTable",
    ] {
        assert_eq!(
            (
                resources[name]["DeletionPolicy"].as_str(),
                resources[name]["UpdateReplacePolicy"].as_str()
            ),
            (Some("Retain"), Some("Retain")),
            "{name}"
        );
    }
    let key = &resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"];
    assert_eq!(key, &serde_json::json!({"Ref": "AlarmTopicKey"}));
}

/// The translated template's Lambda functions, by logical id.
fn lambda_functions(t: &serde_json::Value) -> Vec<(&String, &serde_json::Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Lambda::Function")
        .collect()
}

#[test]
fn classic_lambda_by_default_with_128_mb_and_no_capacity_provider() {
    let t = translated(&[("DeliveryMode", "sync", "queue")]);
    let functions = lambda_functions(&t);
    assert_eq!(functions.len(), 2, "the receiver and the worker");
    for (name, function) in functions {
        let properties = &function["Properties"];
        assert_eq!(properties["MemorySize"], 128, "{name}");
        for managed_only in ["CapacityProviderConfig", "PublishToLatestPublished"] {
            assert!(
                properties.get(managed_only).is_none(),
                "{name}: {properties}"
            );
        }
    }
}

#[test]
fn a_capacity_provider_puts_both_functions_on_managed_instances_without_reserved_concurrency() {
    let t = translated(&[
        ("DeliveryMode", "sync", "queue"),
        ("CapacityProviderArn", "\"\"", CAPACITY_PROVIDER),
    ]);
    let functions = lambda_functions(&t);
    assert_eq!(functions.len(), 2, "the receiver and the worker");
    for (name, function) in functions {
        let properties = &function["Properties"];
        let config =
            &properties["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"];
        assert_eq!(config["CapacityProviderArn"], CAPACITY_PROVIDER, "{name}");
        // The parameter's default: 64 finalizes at once, 1.04 times one alone's latency in
        // `scripts/bench concurrency` (a number here; CloudFormation may pass "64").
        let concurrency = &config["PerExecutionEnvironmentMaxConcurrency"];
        let concurrency = concurrency
            .as_u64()
            .or_else(|| concurrency.as_str()?.parse().ok());
        assert_eq!(concurrency, Some(64), "{name}");
        // 2 GiB per vCPU at 2048 MB: one vCPU, the smallest environment there is.
        assert_eq!(config["ExecutionEnvironmentMemoryGiBPerVCpu"], 2, "{name}");
        assert_eq!(properties["MemorySize"], 2048, "{name}");
        // Invoked unqualified, it runs $LATEST.PUBLISHED: each update must republish it.
        assert_eq!(properties["PublishToLatestPublished"], true, "{name}");
    }
    let t = template();
    let rule = &t["Rules"]["ReservedConcurrencyIsForClassicLambda"];
    let expected: Value =
        serde_norway::from_str(r#"!Not [!Equals [!Ref CapacityProviderArn, ""]]"#).unwrap();
    assert_eq!(rule["RuleCondition"], expected);
    let expected: Value =
        serde_norway::from_str(r#"!Equals [!Ref ReservedConcurrency, ""]"#).unwrap();
    assert_eq!(rule["Assertions"][0]["Assert"], expected);
    let parameter = &t["Parameters"]["PerEnvironmentConcurrency"];
    assert_eq!(
        (
            parameter["MinValue"].as_u64(),
            parameter["MaxValue"].as_u64()
        ),
        (Some(1), Some(1600)),
        "Lambda's range"
    );
}

#[test]
fn takes_only_a_capacity_provider_arn_or_nothing() {
    let t = template();
    let pattern = t["Parameters"]["CapacityProviderArn"]["AllowedPattern"]
        .as_str()
        .unwrap();
    let candidates = [
        ("", true),
        (CAPACITY_PROVIDER, true),
        ("ghl", false),
        ("arn:aws:lambda:us-east-1:123456789012:function:ghl", false),
        ("arn:aws:lambda:us-east-1:1234:capacity-provider:ghl", false),
        (
            "arn:aws:lambda:us-east-1:123456789012:capacity-provider:ghl extra",
            false,
        ),
    ];
    // CloudFormation matches the whole value; Python's fullmatch does the same.
    let mut args = vec![pattern];
    args.extend(candidates.iter().map(|(value, _)| *value));
    let output = python(
        "import re, sys; print(' '.join(str(bool(re.fullmatch(sys.argv[1], v))) for v in sys.argv[2:]))",
        &args,
    );
    let matched = String::from_utf8_lossy(&output.stdout);
    let matched: Vec<&str> = matched.split_whitespace().collect();
    let expected: Vec<&str> = candidates
        .iter()
        .map(|(_, accepted)| if *accepted { "True" } else { "False" })
        .collect();
    assert_eq!(matched, expected, "{candidates:?}");
}
