"""Draws docs/architecture.png: flight-delay on AWS (see docs/ARCHITECTURE.md).

Regenerate (graphviz's `dot` and the `diagrams` package, kept out of the project's .venv):

    apt-get install -y graphviz
    python3 -m venv /tmp/diagrams-venv && /tmp/diagrams-venv/bin/pip install diagrams
    /tmp/diagrams-venv/bin/python docs/architecture.py
"""

from pathlib import Path

from diagrams import Cluster, Diagram, Edge
from diagrams.aws.analytics import EMR
from diagrams.aws.compute import ECR, Fargate
from diagrams.aws.database import RDSPostgresqlInstance
from diagrams.aws.general import Users
from diagrams.aws.management import AutoScaling, Cloudwatch, CloudwatchLogs
from diagrams.aws.network import ELB
from diagrams.aws.storage import S3
from diagrams.onprem.analytics import Databricks
from diagrams.onprem.ci import GithubActions
from diagrams.onprem.monitoring import Grafana, Prometheus
from diagrams.onprem.vcs import Github

OUT = Path(__file__).resolve().parent / "architecture"

GRAPH = {
    "fontsize": "22",
    "fontname": "Helvetica",
    "labelloc": "t",
    "pad": "0.4",
    "nodesep": "0.7",
    "ranksep": "1.1",
    "splines": "spline",
    "newrank": "true",
}
NODE = {"fontsize": "13", "fontname": "Helvetica"}
EDGE = {"fontsize": "12", "fontname": "Helvetica"}
CLUSTER = {"fontsize": "15", "fontname": "Helvetica Bold", "margin": "18"}


def label(text: str, color: str, style: str = "solid", **attrs: str) -> Edge:
    """An edge with a readable label."""
    return Edge(label=text, color=color, fontcolor=color, style=style, **EDGE, **attrs)


with Diagram(
    "flight-delay on AWS: Spark trains, containers serve, PostgreSQL remembers",
    filename=str(OUT),
    outformat="png",
    show=False,
    direction="LR",
    graph_attr=GRAPH,
    node_attr=NODE,
):
    with Cluster("Batch: data and training (Spark)", graph_attr={**CLUSTER, "bgcolor": "#FFF8E7"}):
        raw = S3("raw data bucket\nflights CSV / zip")
        curated = S3("curated bucket\nParquet features")
        spark = EMR("Spark on EMR (or Databricks)\nclean, features, 17 answers")
        trainer = Databricks("Spark on Databricks (or EMR)\nflight-delay train")
        registry = S3("model registry bucket\nmodels/<sha256>.pkl\n+ metrics.json")

    with Cluster("CI/CD", graph_attr={**CLUSTER, "bgcolor": "#EAF2F8"}):
        repo = Github("git repository")
        ci = GithubActions("CI: lint, tests, docker build\n+ smoke; deploys Spark jobs")
        ecr = ECR("ECR\nflight-delay:<git sha>")

    users = Users("clients")

    with Cluster("Serving (VPC, private subnets)", graph_attr={**CLUSTER, "bgcolor": "#E9F7EF"}):
        alb = ELB("Application\nLoad Balancer\n/health/ready checks")
        with Cluster(
            "ECS service on Fargate (or EKS deployment)", graph_attr={**CLUSTER, "bgcolor": "#D5F5E3"}
        ):
            api = [Fargate("api task\ngunicorn x N workers\nlocal artifact cache") for _ in range(3)]
        scaling = AutoScaling("autoscaling on CloudWatch\nalarms: CPU, requests\nper target")
        rds = RDSPostgresqlInstance(
            "RDS PostgreSQL\nhistory + active model\n+ model_artifacts\n(DATABASE_URL)"
        )

    with Cluster("Observability", graph_attr={**CLUSTER, "bgcolor": "#F4ECF7"}):
        logs = CloudwatchLogs("CloudWatch Logs\naccess log + request_id")
        metrics = Cloudwatch("CloudWatch metrics\nalarms")
        prometheus = Prometheus("Prometheus\n(Amazon Managed)")
        grafana = Grafana("Grafana\ndashboards")

    # Batch: raw -> Spark -> curated -> training -> registry.
    raw >> label("read", "#B9770E") >> spark
    spark >> label("write Parquet", "#B9770E") >> curated
    curated >> label("train / test split", "#B9770E") >> trainer
    trainer >> label("artifact + metrics", "#B9770E") >> registry

    # CI/CD: code -> image -> one-off `flight-delay migrate` task -> rolling deploy.
    repo >> label("push / PR", "#1F618D") >> ci
    ci >> label("image", "#1F618D") >> ecr
    # headport="w": dashed edges from below end at the icon, not across the task's label.
    ecr >> label("deploy: migrate, then roll\n(pull image)", "#1F618D", "dashed", headport="w") >> api[1]

    # Serving: clients -> ALB -> tasks -> RDS; artifacts live in RDS (each task caches locally).
    # Activation copies a registry artifact into RDS: POST /model/load/ or a one-off load task.
    users >> label("HTTPS /model/predict/", "#1E8449") >> alb
    for i, task in enumerate(api):
        alb >> label("round robin" if i == 1 else "", "#1E8449") >> task
        task >> label("predictions, history,\nactive version, artifacts" if i == 1 else "", "#1E8449") >> rds
    # Leading newline: keeps the label off the Serving cluster's border.
    activate = "\nactivate: POST /model/load/\nor flight-delay load task"
    registry >> label(activate, "#7D3C98", "dashed", headport="w") >> api[0]
    scaling >> label("add / remove tasks", "#1E8449", "dashed") >> api[2]

    # Observability.
    api[2] >> label("stdout logs", "#6C3483") >> logs
    api[2] >> label("/metrics", "#6C3483", "dashed") >> prometheus
    prometheus >> grafana
    alb >> label("request count,\nlatency, 5xx", "#6C3483", "dashed") >> metrics
