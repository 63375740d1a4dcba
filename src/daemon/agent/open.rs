//! Opening the agent: the store, every source's client, the responders and
//! the incidents' owner, built once at start; a missing key or CA fails here.

use super::*;
use crate::respond::tally::Tally;

impl Agent {
    /// Opens the store and builds every source's client; fails on a missing key or CA.
    pub fn open(cfg: Config, secrets: &Secrets) -> Result<Agent, AgentError> {
        let store = Store::new(&cfg.state_dir);
        let now = Instant::now();
        let mut sources = Vec::new();
        for sc in &cfg.sources {
            let client =
                build_client(sc, secrets, &cfg.limits).map_err(|error| AgentError::Source {
                    source_name: sc.name().to_string(),
                    error,
                })?;
            let state = match store.load(sc.name()) {
                Ok(Some(s)) => s,
                Ok(None) => SourceState::default(),
                Err(e) => {
                    tracing::error!("intel store: {e}; the source starts empty");
                    SourceState::default()
                }
            };
            // A source pulled recently enough keeps its schedule across restarts.
            let age = state.last_ok.map(|t| unix_now().saturating_sub(t));
            let next = match age {
                Some(a) if a < sc.interval().as_secs() => {
                    now + Duration::from_secs(sc.interval().as_secs() - a)
                }
                _ => now,
            };
            sources.push(Source {
                cfg: sc.clone(),
                client,
                state,
                next,
                failures: 0,
                pulling: false,
                generation: 0,
                held: None,
                pulls: Pulls::default(),
            });
        }
        let applier = Applier::new(
            &cfg.suricata.rules_dir,
            Some(&cfg.suricata.command_socket),
            cfg.suricata.socket_timeout,
        );
        let status = Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            state: State::Starting,
            mode: cfg.enforcement.mode,
            action: cfg.enforcement.action,
            fail: cfg.enforcement.fail,
            started: unix_now(),
            advisor: cfg.advisor.describe(
                cfg.advisor
                    .api_key_env()
                    .is_some_and(|k| secrets.get(k).is_some()),
            ),
            mail: cfg.mail.describe(),
            notify: cfg.notify.iter().map(|t| t.describe()).collect(),
            warnings: cfg.warnings(),
            ..Status::default()
        };
        let warninglists = Arc::new(cfg.warninglists.load(&cfg.state_dir));
        let mut status = status;
        status
            .warnings
            .extend(warninglists.problems.iter().cloned());
        for w in &status.warnings {
            tracing::warn!("{w}");
        }
        let status_tx = Arc::new(watch::Sender::new(status.clone()));
        let outbox = match Outbox::open(
            &cfg.state_dir.join("outbox"),
            cfg.alerts.outbox_max,
            unix_now(),
        ) {
            Ok(o) => Some(Arc::new(std::sync::Mutex::new(
                o.with_first_backoff(cfg.alerts.retry_first.as_secs()),
            ))),
            Err(e) => {
                tracing::error!("{e}; responders are off");
                None
            }
        };
        let tally = Arc::new(Tally::default());
        let responders = match &outbox {
            Some(o) => Some(build_responders(
                &cfg,
                secrets,
                &sources,
                o.clone(),
                tally.clone(),
            )?),
            None => None,
        };
        let wake_responders = Arc::new(Notify::new());
        let (index, index_rx) = watch::channel(Arc::new(index_of(&sources)));
        let (held_tx, held) = mpsc::channel(64);
        let (incidents_tx, inbox) = mpsc::channel(16);
        let (devices, directory, devices_view) = if cfg.devices.enabled {
            let (owner, directory, view) = crate::daemon::devices::Devices::new(
                crate::daemon::devices::Settings::from_config(&cfg),
                outbox.clone(),
                wake_responders.clone(),
            );
            let (tx, inbox) = mpsc::channel(16);
            (Some((owner, inbox, tx)), Some(directory), view)
        } else {
            (None, None, watch::channel(Default::default()).1)
        };
        let (book, alerts_view) = Incidents::new(
            &cfg,
            outbox.clone(),
            wake_responders.clone(),
            index_rx,
            held_tx,
            directory,
        );
        let (devices, devices_tx) = match devices {
            Some((owner, inbox, tx)) => (Some((owner, inbox)), Some(tx)),
            None => (None, None),
        };
        Ok(Agent {
            outbox,
            tally,
            responders,
            wake_responders,
            mail_on: !cfg.mail.to.is_empty(),
            budget: cfg.limits.indicator_budget(),
            incidents: Some((book, inbox)),
            incidents_tx,
            devices,
            devices_tx,
            devices_view,
            stopper: Stopper::default(),
            heart: Heart::new("agent", loop_within(&cfg)),
            hearts: Vec::new(),
            alerts_view,
            index,
            held,
            local_allow: load_local_allowlist(&cfg.state_dir),
            shadow: Arc::new(std::sync::Mutex::new(crate::owner::shadow::Shadow::load(
                &cfg.state_dir,
            ))),
            selftest_due: None,
            probes: Vec::new(),
            bad_rendering: None,
            applied: None,
            rolled_back: false,
            panel: None,
            mqtt: None,
            intake: Arc::new(Counters::default()),
            packet_path: crate::enforce::firewall::PacketPath::from_config(&cfg, None),
            path_wrong: None,
            names: None,
            accept_shrink: HashSet::new(),
            warninglists,
            loss: Default::default(),
            cfg,
            store,
            sources,
            applier,
            status,
            status_tx,
        })
    }
}

fn build_responders(
    cfg: &Config,
    secrets: &Secrets,
    sources: &[Source],
    outbox: SharedOutbox,
    tally: Arc<Tally>,
) -> Result<Responders, AgentError> {
    let misp = sources
        .iter()
        .filter_map(|s| match &s.client {
            Client::Misp(c) => Some((s.cfg.name().to_string(), c.clone())),
            _ => None,
        })
        .collect();
    let key = cfg.advisor.api_key_env().and_then(|k| secrets.get(k));
    let advisor = crate::respond::advisor::Client::new(&cfg.advisor, key, cfg.triage().home)
        .map_err(|e| AgentError::Responder(format!("advisor: {e}")))?
        .map(|c| c.with_max_body(cfg.limits.max_body()));
    let mailer = crate::respond::mail::Mailer::new(&cfg.mail, secrets.get(&cfg.mail.password_env))
        .map_err(|e| AgentError::Responder(e.to_string()))?;
    Ok(Responders {
        outbox,
        misp,
        sighting_source: cfg.alerts.sighting_source.clone(),
        advisor,
        advice_tries: cfg.advisor.tries,
        mailer,
        max_per_hour: cfg.mail.max_per_hour,
        state_dir: cfg.state_dir.clone(),
        appliance: crate::respond::mail::appliance_name(),
        tally,
        push: cfg
            .notify
            .iter()
            .map(|t| crate::respond::push::Pusher::new(t, secrets))
            .collect::<Result<_, _>>()
            .map_err(|e| AgentError::Responder(e.to_string()))?,
    })
}

pub(super) fn build_client(
    sc: &SourceConfig,
    secrets: &Secrets,
    limits: &crate::config::Limits,
) -> Result<Client, IntelError> {
    let fetch = |timeout| -> Result<fetch::Fetch, IntelError> {
        Ok(fetch::Fetch {
            http: token_client(sc, secrets)?,
            timeout,
            max_body: limits.max_body(),
        })
    };
    Ok(match sc {
        SourceConfig::Misp(m) => {
            let key = secrets.get(&m.api_key_env).ok_or_else(|| {
                IntelError::Config(format!(
                    "no API key: set {} in the environment, in .env beside the config, or as a systemd credential",
                    m.api_key_env
                ))
            })?;
            let http = fetch::client(m.ca_file.as_deref(), m.verify_tls)?;
            Client::Misp(
                misp::Client::new(http, &m.url, key, m.timeout)?.with_max_body(limits.max_body()),
            )
        }
        SourceConfig::MispFeed(f) => Client::Feed(
            Location::new(f.url.as_deref(), f.path.as_deref())?,
            fetch(f.timeout)?,
        ),
        SourceConfig::List(l) => Client::List(
            Location::new(l.url.as_deref(), l.path.as_deref())?,
            fetch(l.timeout)?,
        ),
    })
}

/// The HTTP client of a feed or list: with its bearer token, when it names one.
fn token_client(sc: &SourceConfig, secrets: &Secrets) -> Result<reqwest::Client, IntelError> {
    let Some(env) = sc.token_env() else {
        return fetch::client(None, true);
    };
    let token = secrets.get(env).ok_or_else(|| {
        IntelError::Config(format!(
            "no token: set {env} in the environment, in .env beside the config, or as a systemd credential"
        ))
    })?;
    let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| IntelError::Config(format!("{env}: not a token that fits an HTTP header")))?;
    // Kept out of debug output and HTTP/2 header compression tables.
    value.set_sensitive(true);
    let headers = reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]);
    fetch::builder(None, true)?
        .default_headers(headers)
        .build()
        .map_err(|e| IntelError::Config(format!("cannot build HTTP client: {e}")))
}
