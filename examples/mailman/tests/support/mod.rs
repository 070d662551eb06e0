//! The adapter that puts Mailman under maildrill: all a team writes to test its own client.
//! The README's "Test your own client" section shows these lines.

use maildrill::subject::{Capability, Message, Process, Start, Subject, SubjectError};
use mailman::{Config, Mailman, Outgoing, SyncConfig, Transport};

/// The adapter: all a team writes to put its client under maildrill.
pub struct MailmanSubject;

/// A started Mailman.
pub struct Running(Mailman);

impl Subject for MailmanSubject {
    type Process = Running;

    fn name(&self) -> String {
        "mailman".into()
    }

    fn capabilities(&self) -> Vec<Capability> {
        use Capability::{Alerts, GraphSend, InboundSync, Smtp};
        vec![Smtp, GraphSend, InboundSync, Alerts]
    }

    async fn start(&self, start: Start) -> Result<Running, SubjectError> {
        let e = start.endpoints;
        let sync = start.settings.inbound.then(|| SyncConfig {
            graph_url: e.graph_url.clone(),
            every: start.settings.sync_interval,
        });
        let transport = if start.settings.graph {
            Transport::Graph { url: e.graph_url }
        } else {
            Transport::Smtp {
                host: e.smtp_host,
                port: e.smtp_port,
            }
        };
        let config = Config {
            sync,
            token_url: e.token_url,
            client_id: start.client_id,
            secret_file: start.secret.path().to_path_buf(),
            mailbox: start.mailbox,
            transport,
            ca_pem: Some(e.ca_pem),
            alerts_url: Some(e.alerts_url),
            state_dir: start.state_dir,
        };
        Ok(Running(Mailman::start(config).await?))
    }
}

impl Process for Running {
    async fn submit(&mut self, m: Message) -> Result<(), SubjectError> {
        let (message_id, from, to, subject, body) = (m.message_id, m.from, m.to, m.subject, m.body);
        Ok(self
            .0
            .send(Outgoing {
                message_id,
                from,
                to,
                subject,
                body,
            })
            .await?)
    }

    async fn stop(self) -> Result<(), SubjectError> {
        self.0.shutdown().await;
        Ok(())
    }

    fn synced(&self) -> Vec<String> {
        self.0.synced()
    }
}
