//! The status panel: three LEDs, the board's ACT LED and a button tell and
//! steer the threat state at a glance. One pure function maps the agent's
//! condition to patterns ([`pattern::lights`]); the backends only draw them.
//! The panel knows the agent only through [`Shown`] and the button's
//! [`button::Action`], so the appliance never reaches up into the daemon.

pub mod backend;
pub mod button;
pub mod legend;
pub mod pattern;

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use self::backend::{Backend, Levels};
use self::button::Action;
use self::button::Button;
use self::pattern::{lights, Condition, Led, Lights};

/// Something blocked within this many seconds counts as "blocking now".
pub const BLOCKING_NOW_SECS: i64 = 10;
/// How often the LEDs are redrawn and the button read.
pub const TICK: Duration = Duration::from_millis(20);

/// Set when the agent is failing (a panic): the panel shows the fault pattern.
pub static FAULT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The backends, shared with the panic hook so a dying agent can still light red.
pub type Shared = std::sync::Arc<std::sync::Mutex<Vec<Box<dyn Backend>>>>;

/// Input to the panel from outside the hardware.
#[derive(Debug)]
pub enum Input {
    /// A simulated button press of this length (tests, the lab, `homewarden panel press`).
    Press(Duration),
}

/// Whatever the panel shows: the agent's status, reduced to a [`Condition`].
pub trait Shown {
    /// The condition at unix time `now` (something blocked seconds ago is "blocking now").
    fn condition(&self, now: i64) -> Condition;
}

fn levels(l: &Lights, t_ms: u64) -> Levels {
    Levels {
        green: l.green.is_on(t_ms),
        amber: l.amber.is_on(t_ms),
        red: l.red.is_on(t_ms),
        act: l.act.is_on(t_ms),
    }
}

/// Draws the status on every backend and turns button presses into requests
/// to the agent, until `shutdown`; then leaves every LED off.
pub async fn run<S: Shown, R: From<Action>>(
    backends: Shared,
    status: watch::Receiver<S>,
    mut input: mpsc::Receiver<Input>,
    requests: mpsc::Sender<R>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let start = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    let mut button = Button::new();
    let mut simulated_until: Option<Instant> = None;
    let mut failing = vec![false; backends.lock().map(|b| b.len()).unwrap_or(0)];
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
            Some(Input::Press(d)) = input.recv() => simulated_until = Some(Instant::now() + d),
        }
        let now = Instant::now();
        let t = now.duration_since(start).as_millis() as u64;
        let action = {
            let Ok(mut backends) = backends.lock() else {
                break;
            };
            let hardware = backends.iter_mut().filter_map(|b| b.button()).any(|b| b);
            let pressed = hardware || simulated_until.is_some_and(|u| now < u);
            let action = button.level(pressed, t);
            let mut c = status.borrow().condition(crate::intel::unix_now() as i64);
            c.reset_countdown = button.countdown(t);
            c.agent_fault = FAULT.load(std::sync::atomic::Ordering::Relaxed);
            let l = lights(&c);
            let lv = levels(&l, t);
            for (b, failed) in backends.iter_mut().zip(failing.iter_mut()) {
                match b.show(lv, &l) {
                    Ok(()) => *failed = false,
                    Err(e) if !*failed => {
                        tracing::warn!("{e}");
                        *failed = true;
                    }
                    Err(_) => {}
                }
            }
            action
        };
        if let Some(action) = action {
            tracing::info!(?action, "button");
            if requests.send(R::from(action)).await.is_err() {
                break;
            }
        }
    }
    // A defined state on the way out: dark (a crash leaves red, see `fault`).
    let off = Lights {
        green: Led::Off,
        amber: Led::Off,
        red: Led::Off,
        act: Led::Off,
    };
    if let Ok(mut backends) = backends.lock() {
        for b in backends.iter_mut() {
            let _ = b.show(Levels::default(), &off);
        }
    }
}

/// Shows "agent failing" (red) on every backend: the last thing a dying agent does.
pub fn fault(backends: &mut [Box<dyn Backend>]) {
    let l = lights(&Condition {
        agent_fault: true,
        ..Condition::default()
    });
    for b in backends {
        let _ = b.show(
            Levels {
                red: true,
                ..Levels::default()
            },
            &l,
        );
    }
}

/// Presses of the button that meant something, as status shows them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Press {
    /// Unix time.
    pub at: u64,
    /// What it did.
    pub action: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A status that is its condition.
    #[derive(Clone, Copy, Default)]
    struct Fixed(Condition);

    impl Shown for Fixed {
        fn condition(&self, _now: i64) -> Condition {
            self.0
        }
    }

    /// Records what it was asked to show.
    struct Recorder(Arc<Mutex<Vec<Lights>>>);

    impl Backend for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn show(&mut self, _: Levels, l: &Lights) -> Result<(), backend::PanelError> {
            let mut v = self.0.lock().unwrap();
            if v.last() != Some(l) {
                v.push(*l);
            }
            Ok(())
        }
    }

    fn shared(r: Recorder) -> Shared {
        Arc::new(Mutex::new(vec![Box::new(r) as Box<dyn Backend>]))
    }

    fn protected() -> Fixed {
        Fixed(Condition {
            protected: true,
            ..Condition::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_simulated_press_acknowledges_and_the_panel_follows_the_status() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut st = protected();
        st.0.unacked_high = true;
        let (status_tx, status_rx) = watch::channel(st);
        let (input_tx, input_rx) = mpsc::channel(4);
        let (req_tx, mut req_rx) = mpsc::channel::<Action>(4);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            shared(Recorder(seen.clone())),
            status_rx,
            input_rx,
            req_tx,
            async {
                let _ = stop_rx.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(seen.lock().unwrap().last().unwrap().red, Led::On);

        input_tx
            .send(Input::Press(Duration::from_millis(200)))
            .await
            .unwrap();
        let req = tokio::time::timeout(Duration::from_secs(2), req_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(req, Action::Ack);

        // The agent acknowledges: red goes off, green stays.
        let mut st = protected();
        st.0.unacked_high = false;
        status_tx.send_replace(st);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let last = *seen.lock().unwrap().last().unwrap();
        assert_eq!(
            (last.green, last.red, last.act),
            (Led::On, Led::Off, Led::Heartbeat)
        );

        stop_tx.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(
            seen.lock().unwrap().last().unwrap().green,
            Led::Off,
            "dark after shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn holding_the_button_shows_the_countdown_and_resets() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (_status_tx, status_rx) = watch::channel(protected());
        let (input_tx, input_rx) = mpsc::channel(4);
        let (req_tx, mut req_rx) = mpsc::channel::<Action>(4);
        tokio::spawn(run(
            shared(Recorder(seen.clone())),
            status_rx,
            input_rx,
            req_tx,
            std::future::pending(),
        ));
        input_tx
            .send(Input::Press(Duration::from_secs(11)))
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(20), req_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, Action::CountdownStarted);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            seen.lock().unwrap().last().unwrap().amber,
            pattern::FAST,
            "countdown pattern"
        );
        let second = tokio::time::timeout(Duration::from_secs(20), req_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second, Action::FactoryReset);
    }

    #[test]
    fn a_dying_agent_leaves_red_alone() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let backends = shared(Recorder(seen.clone()));
        fault(&mut backends.lock().unwrap());
        let l = *seen.lock().unwrap().last().unwrap();
        assert_eq!(
            (l.green, l.amber, l.red),
            (Led::Off, Led::Off, pattern::FAST)
        );
    }
}
