// Package deploy holds the deployment files of the chat backend (Dockerfile inputs,
// docker-compose stack, nginx load balancer, NATS and MongoDB set-up, Kubernetes
// manifests) and the code that renders the nginx configuration from one template, so
// the compose stack and loopback test topologies cannot drift apart. Its tests validate
// every file without a Docker engine or a cluster.
package deploy
