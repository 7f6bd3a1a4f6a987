// Debezium's own connector, run in Debezium's embedded engine and published to Kafka, so the
// project's capture can be compared with it on the same source (devstack/debezium.py starts it).
//
//   java -cp <classes>:<jars>/* StranglerDebezium engine.properties
//
// The properties file holds the engine's properties, passed to DebeziumEngine unchanged, and
// ours, prefixed "strangler.":
//   strangler.bootstrap    the Kafka bootstrap servers every record is sent to
//   strangler.status       a file that gets one line per event: "started", "streaming",
//                          "acked <records> <epoch ms of the last ack>", "stopped", "failed: <why>"
//   strangler.producer.X   producer setting X (acks, idempotence and serializers are fixed)
//
// A record is marked processed only once Kafka has acknowledged it, so the engine's offsets
// never run ahead of the topics: after a crash Debezium resends, it never skips.

import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Json;

import java.io.FileInputStream;
import java.io.FileWriter;
import java.io.IOException;
import java.io.InputStream;
import java.io.Writer;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import javax.management.MBeanServer;
import javax.management.ObjectName;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public final class StranglerDebezium {
    private static final String OURS = "strangler.";
    private static final String PRODUCER = OURS + "producer.";

    private final Writer status;
    private final AtomicLong acked = new AtomicLong();
    private final AtomicLong ackedAtMs = new AtomicLong();
    private long ackedWritten;
    private volatile boolean streaming;
    private volatile boolean failed;

    private StranglerDebezium(String statusPath) throws IOException {
        this.status = new FileWriter(statusPath, StandardCharsets.UTF_8, true);
    }

    private synchronized void status(String line) {
        try {
            status.write(line.replace('\n', ' ') + "\n");
            status.flush();
        } catch (IOException e) {
            System.err.println("cannot write the status file: " + e);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: StranglerDebezium <engine.properties>");
            System.exit(2);
        }
        Properties all = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            all.load(in);
        }
        Properties engineProps = new Properties();
        Properties producerProps = new Properties();
        for (String key : all.stringPropertyNames()) {
            if (key.startsWith(PRODUCER)) {
                producerProps.setProperty(key.substring(PRODUCER.length()), all.getProperty(key));
            } else if (!key.startsWith(OURS)) {
                engineProps.setProperty(key, all.getProperty(key));
            }
        }
        // Debezium's default JSON output: the schemaless JSON converter.
        engineProps.putIfAbsent("key.converter.schemas.enable", "false");
        engineProps.putIfAbsent("value.converter.schemas.enable", "false");

        producerProps.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, required(all, OURS + "bootstrap"));
        producerProps.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        producerProps.setProperty(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        producerProps.setProperty(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        producerProps.setProperty(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        StranglerDebezium runner = new StranglerDebezium(required(all, OURS + "status"));
        System.exit(runner.run(engineProps, producerProps));
    }

    private static String required(Properties props, String key) {
        String value = props.getProperty(key);
        if (value == null || value.isEmpty()) {
            System.err.println("the properties file has no " + key);
            System.exit(2);
        }
        return value;
    }

    private int run(Properties engineProps, Properties producerProps) throws InterruptedException {
        KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps);
        DebeziumEngine<ChangeEvent<String, String>> engine = DebeziumEngine.create(Json.class)
                .using(engineProps)
                .using(new DebeziumEngine.ConnectorCallback() {
                    @Override
                    public void taskStarted() {
                        status("started");
                    }
                })
                .using((success, message, error) -> {
                    if (!success) {
                        failed = true;
                        status("failed: " + message + (error == null ? "" : "; " + causes(error)));
                    }
                })
                .notifying((records, committer) -> send(producer, records, committer))
                .build();

        CountDownLatch done = new CountDownLatch(1);
        Thread hook = new Thread(() -> {
            try {
                engine.close();
                done.await(30, TimeUnit.SECONDS);
            } catch (IOException | InterruptedException e) {
                System.err.println("stopping the engine: " + e);
            }
        }, "strangler-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);

        Thread watcher = new Thread(this::watch, "strangler-status");
        watcher.setDaemon(true);
        watcher.start();
        try {
            engine.run(); // returns once the engine has stopped: closed by the hook, or failed
        } catch (RuntimeException e) {
            failed = true;
            status("failed: " + causes(e));
        } finally {
            producer.close();
            writeAcked();
            if (!failed) {
                status("stopped");
            }
            done.countDown();
        }
        return failed ? 1 : 0;
    }

    // One batch: send every record, wait for Kafka to acknowledge all of them, then commit.
    private void send(KafkaProducer<String, String> producer, List<ChangeEvent<String, String>> records,
                      DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer)
            throws InterruptedException {
        List<Future<RecordMetadata>> sent = new ArrayList<>(records.size());
        for (ChangeEvent<String, String> record : records) {
            // a null value stays null: the tombstone after a delete
            sent.add(producer.send(new ProducerRecord<>(record.destination(), record.partition(),
                    record.key(), record.value())));
        }
        producer.flush();
        for (int i = 0; i < records.size(); i++) {
            try {
                sent.get(i).get();
            } catch (ExecutionException e) {
                throw new IllegalStateException("Kafka refused a record for "
                        + records.get(i).destination() + ": " + e.getCause(), e.getCause());
            }
            committer.markProcessed(records.get(i));
        }
        committer.markBatchFinished();
        acked.addAndGet(records.size());
        ackedAtMs.set(System.currentTimeMillis());
    }

    // Every 100 ms: say "streaming" once the streaming metrics report a connection (the
    // snapshot, if any, is then over), and the acknowledged count when it has changed.
    private void watch() {
        MBeanServer beans = ManagementFactory.getPlatformMBeanServer();
        while (true) {
            if (!streaming) {
                try {
                    Set<ObjectName> names = beans.queryNames(
                            new ObjectName("debezium.*:type=connector-metrics,context=streaming,*"), null);
                    for (ObjectName name : names) {
                        if (Boolean.TRUE.equals(beans.getAttribute(name, "Connected"))) {
                            streaming = true;
                            status("streaming");
                        }
                    }
                } catch (Exception e) {
                    // not registered yet
                }
            }
            writeAcked();
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private synchronized void writeAcked() {
        long count = acked.get();
        if (count != ackedWritten) {
            status("acked " + count + " " + ackedAtMs.get());
            ackedWritten = count;
        }
    }

    private static String causes(Throwable error) {
        StringBuilder text = new StringBuilder(error.toString());
        for (Throwable cause = error.getCause(); cause != null && cause != cause.getCause(); cause = cause.getCause()) {
            text.append("; caused by ").append(cause);
        }
        return text.toString();
    }
}
